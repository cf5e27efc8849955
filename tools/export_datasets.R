# Export the example data sets bundled with hierlm from their R packages.
#
# Usage (from the repository root):
#     Rscript tools/export_datasets.R
#
# Writes plain CSV files (header row, no row names, no quoting) into
# hierlm/datasets/data/.  Factors are written as their labels.  Every
# double is written with the shortest of "%.15g" / "%.16g" / "%.17g" that
# reads back to the identical double, so the files round-trip exactly;
# the script verifies this after writing each file.

suppressPackageStartupMessages({
  library(lme4)
  library(nlme)
  library(glmmTMB)  # Salamanders
})

out_dir <- file.path("hierlm", "datasets", "data")
if (!dir.exists(out_dir)) dir.create(out_dir, recursive = TRUE)

# Shortest decimal representation (15..17 significant digits) that parses
# back to exactly the same double.
exact_num <- function(x) {
  out <- sprintf("%.15g", x)
  for (d in 16:17) {
    bad <- !is.na(x) & as.numeric(out) != x
    if (!any(bad)) break
    out[bad] <- sprintf(paste0("%.", d, "g"), x[bad])
  }
  out[is.na(x)] <- "NA"
  out
}

as_text_columns <- function(df) {
  res <- lapply(df, function(col) {
    if (is.factor(col)) as.character(col)
    else if (is.integer(col)) as.character(col)
    else if (is.numeric(col)) exact_num(col)
    else as.character(col)
  })
  as.data.frame(res, stringsAsFactors = FALSE, check.names = FALSE)
}

write_dataset <- function(df, name, gz = FALSE) {
  df <- as.data.frame(df)
  attr(df, "formula") <- NULL
  txt <- as_text_columns(df)
  stopifnot(!any(grepl("[,\"\n]", unlist(txt))))
  path <- file.path(out_dir, name)
  con <- if (gz) gzfile(path, "w", compression = 9) else file(path, "w")
  write.table(txt, con, sep = ",", quote = FALSE, row.names = FALSE,
              col.names = TRUE, na = "NA", eol = "\n")
  close(con)

  # Round-trip check: numbers identical, labels identical.
  back <- read.csv(path, colClasses = "character", check.names = FALSE)
  stopifnot(identical(names(back), names(df)), nrow(back) == nrow(df))
  for (v in names(df)) {
    col <- df[[v]]
    if (is.numeric(col) && !is.factor(col)) {
      stopifnot(identical(as.numeric(back[[v]]), as.numeric(col)))
    } else {
      stopifnot(identical(back[[v]], as.character(col)))
    }
  }
  cat(sprintf("wrote %-20s %6d rows  %s\n", name, nrow(df),
              paste(names(df), collapse = ", ")))
}

write_dataset(lme4::sleepstudy[, c("Reaction", "Days", "Subject")],
              "sleepstudy.csv")
write_dataset(lme4::InstEval[, c("s", "d", "studage", "lectage", "service",
                                 "dept", "y")],
              "InstEval.csv.gz", gz = TRUE)
write_dataset(lme4::Dyestuff, "Dyestuff.csv")
write_dataset(lme4::Dyestuff2, "Dyestuff2.csv")
write_dataset(lme4::Pastes[, c("strength", "batch", "cask", "sample")],
              "Pastes.csv")
write_dataset(lme4::Penicillin[, c("diameter", "plate", "sample")],
              "Penicillin.csv")
write_dataset(lme4::cake[, c("replicate", "recipe", "temperature", "angle",
                             "temp")],
              "cake.csv")
write_dataset(nlme::Machines[, c("Worker", "Machine", "score")],
              "Machines.csv")

# Non-Gaussian examples (binomial, Poisson, negative binomial GLMMs).
write_dataset(lme4::cbpp[, c("herd", "incidence", "size", "period")],
              "cbpp.csv")
write_dataset(lme4::grouseticks[, c("INDEX", "TICKS", "BROOD", "HEIGHT",
                                    "YEAR", "LOCATION", "cHEIGHT")],
              "grouseticks.csv")
write_dataset(lme4::VerbAgg[, c("Anger", "Gender", "item", "resp", "id",
                                "btype", "situ", "mode", "r2")],
              "VerbAgg.csv")
write_dataset(glmmTMB::Salamanders[, c("site", "mined", "cover", "sample",
                                       "DOP", "Wtemp", "DOY", "spp",
                                       "count")],
              "Salamanders.csv")

cat("R", as.character(getRversion()),
    " lme4", as.character(packageVersion("lme4")),
    " nlme", as.character(packageVersion("nlme")),
    " glmmTMB", as.character(packageVersion("glmmTMB")), "\n")
