# lme4/lmerTest fits with tight optimiser tolerances, for models where lme4's
# default stopping rule (nloptwrap, BOBYQA with xtol_abs = ftol_abs = 1e-8 on
# the criterion) ends measurably short of the optimum.
#
# Usage (from the repository root):  Rscript tests/lmm/make_tight_lme4.R
# Writes tests/lmm/lme4_tight.json. Data are prepared as in
# tests/fixtures/lme4/make_fixtures.R (factors with sorted levels).

suppressPackageStartupMessages({
  library(lme4)
  library(lmerTest)
  library(jsonlite)
})

sorted_factor <- function(x) {
  lev <- if (is.numeric(x)) sort(unique(x)) else sort(unique(x), method = "radix")
  factor(x, levels = lev)
}
read_with_factors <- function(path, factors) {
  d <- read.csv(path, stringsAsFactors = FALSE)
  for (v in factors) d[[v]] <- sorted_factor(d[[v]])
  d
}
data_dir <- file.path("hierlm", "datasets", "data")
tight <- lmerControl(optCtrl = list(xtol_abs = 1e-12, ftol_abs = 1e-14, xtol_rel = 1e-12,
                                    maxeval = 1e5))
models <- list(
  machines_corr_reml = list(
    data = function() read_with_factors(file.path(data_dir, "Machines.csv"),
                                        c("Worker", "Machine")),
    formula = score ~ Machine + (Machine | Worker), reml = TRUE),
  insteval_crossed_reml = list(
    data = function() read_with_factors(file.path(data_dir, "InstEval.csv.gz"),
                                        c("s", "d", "studage", "lectage", "service", "dept")),
    formula = y ~ service + (1 | s) + (1 | d) + (1 | dept), reml = TRUE)
)

out <- list()
for (id in names(models)) {
  spec <- models[[id]]
  fit <- lmerTest::lmer(spec$formula, data = spec$data(), REML = spec$reml, control = tight)
  coefs <- summary(fit)$coefficients
  vc <- as.data.frame(VarCorr(fit))
  out[[id]] <- list(
    control = "optCtrl = list(xtol_abs = 1e-12, ftol_abs = 1e-14, xtol_rel = 1e-12)",
    theta = unname(getME(fit, "theta")),
    sigma = sigma(fit),
    criterion = if (spec$reml) REMLcrit(fit) else deviance(fit),
    fixef_names = rownames(coefs),
    estimate = unname(coefs[, "Estimate"]),
    std_error = unname(coefs[, "Std. Error"]),
    df = unname(coefs[, "df"]),
    varcorr_sdcor = vc$sdcor
  )
}
writeLines(toJSON(out, digits = I(17), auto_unbox = TRUE, pretty = TRUE),
           file.path("tests", "lmm", "lme4_tight.json"))
