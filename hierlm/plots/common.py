"""Helpers shared by the figures of ``hierlm.plots``.

Every plotting function returns a :class:`matplotlib.figure.Figure` that is
*not* registered with ``matplotlib.pyplot``: nothing accumulates in pyplot's
figure list, a Jupyter cell shows the returned figure once, and a script
saves it with ``fig.savefig("name.png")``. Figures drawn by ArviZ-plots are
detached from pyplot the same way.

The helpers here turn a fit into what the figures need: its draws
(:class:`~hierlm.results.draws.FitDraws`), the posterior of its main
parameters as an ArviZ ``DataTree`` (with the variable names of a Bayesian
fit's ``idata``: ``fixef``, ``sigma``, ``sd_<block>``, ``cor_<block>``), and
the random-effect blocks of one grouping factor.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from hierlm.design.blocks import Design, RandomBlock
from hierlm.errors import ColumnNotFoundError, InputTypeError
from hierlm.results.common import as_draws, block_labels, chains_of
from hierlm.results.draws import FitDraws

if TYPE_CHECKING:
    import xarray as xr
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "MAIN_PARAMETER_PREFIXES",
    "new_figure",
    "figure_of",
    "detach_figure",
    "finish_arviz_figure",
    "require_posterior",
    "group_blocks",
    "only_group",
    "thin_draws",
    "mean_fitted",
    "main_parameter_tree",
    "posterior_tree",
]

#: Variables of a posterior that :func:`main_parameter_tree` keeps (prefixes of ``sd_``/``cor_``).
MAIN_PARAMETER_PREFIXES = ("fixef", "sigma", "sd_", "cor_")


def _matplotlib() -> Any:
    """Import matplotlib, or say how to install it."""
    try:
        import matplotlib
    except ImportError:  # pragma: no cover - matplotlib is a dependency of hierlm.plots
        raise ImportError(
            "hierlm.plots needs matplotlib: pip install matplotlib (or hierlm[plots])."
        ) from None
    return matplotlib


def new_figure(nrows: int = 1, ncols: int = 1, *, width: float = 6.4, height: float = 4.8,
               sharex: bool | Literal["none", "all", "row", "col"] = False,
               sharey: bool | Literal["none", "all", "row", "col"] = False) -> tuple[Figure, np.ndarray]:
    """Create a figure, not registered with pyplot, and its grid of axes.

    Parameters
    ----------
    nrows, ncols : int
        Shape of the grid of axes.
    width, height : float
        Figure size in inches.
    sharex, sharey : bool or {"row", "col", "all", "none"}
        Passed to :meth:`matplotlib.figure.Figure.subplots`.

    Returns
    -------
    figure : matplotlib.figure.Figure
    axes : numpy.ndarray
        Axes of shape (nrows, ncols).
    """
    _matplotlib()
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    axes = figure.subplots(nrows, ncols, squeeze=False, sharex=sharex, sharey=sharey)
    return figure, axes


def figure_of(ax: Axes | None, *, width: float = 6.4, height: float = 4.8) -> tuple[Figure, Axes]:
    """Return the figure of ``ax``, or a new single-axes figure when ``ax`` is None."""
    if ax is None:
        figure, axes = new_figure(width=width, height=height)
        return figure, axes[0, 0]
    parent = ax.get_figure()
    if parent is None:  # pragma: no cover - an Axes always belongs to a figure
        raise InputTypeError("ax= must be an Axes placed on a figure.")
    return parent, ax  # type: ignore[return-value]


def detach_figure(plot_collection: Any) -> Figure:
    """Return the matplotlib figure of an ArviZ ``PlotCollection``, removed from pyplot.

    Parameters
    ----------
    plot_collection : arviz_plots.PlotCollection
        The output of an ``arviz_plots.plot_*`` call with the matplotlib backend.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    figure = plot_collection.viz["figure"]
    figure = figure.item() if hasattr(figure, "item") else figure
    plt.close(figure)
    return figure  # type: ignore[no-any-return]


def finish_arviz_figure(figure: Figure, title: str | None = None, panel_width: float = 4.2,
                        panel_height: float = 2.5) -> Figure:
    """Give an ArviZ-plots figure a size per panel, constrained layout and a title.

    Parameters
    ----------
    figure : matplotlib.figure.Figure
        A figure drawn by ``arviz_plots``.
    title : str, optional
        Figure title (``suptitle``), kept clear of the panel titles.
    panel_width, panel_height : float
        Inches per panel; the width is capped at 16 inches.

    Returns
    -------
    matplotlib.figure.Figure
        The same figure.
    """
    if figure.axes:
        rows, cols = figure.axes[0].get_subplotspec().get_gridspec().get_geometry()  # type: ignore[union-attr]
        figure.set_size_inches(min(16.0, cols * panel_width), rows * panel_height + (0.5 if title else 0.2))
    figure.set_layout_engine("constrained")
    if title:
        figure.suptitle(title)
    return figure


def require_posterior(draws: FitDraws, what: str) -> None:
    """Raise InputTypeError when ``draws`` hold a point estimate rather than posterior draws."""
    if draws.point:
        raise InputTypeError(
            f"{what} needs posterior draws; this fit holds a point estimate (ML/REML/MAP). "
            "Fit with method='nuts', or use the tables (fit.icc(), fit.varcorr()) of this fit."
        )


def group_blocks(design: Design, group: str | None) -> list[tuple[int, str, RandomBlock]]:
    """The random-effect blocks of one grouping factor (all blocks when ``group`` is None).

    Parameters
    ----------
    design : Design
        The model's design.
    group : str or None
        Grouping factor, e.g. ``"Subject"``.

    Returns
    -------
    list of (int, str, RandomBlock)
        Block index, lme4 label (``Subject``, ``Subject.1``) and block.

    Raises
    ------
    ColumnNotFoundError
        If ``group`` is not a grouping factor of the model.
    InputTypeError
        If the model has no random effects.
    """
    if not design.blocks:
        raise InputTypeError("The model has no random effects, so there are no group effects to plot.")
    labelled = list(zip(range(len(design.blocks)), block_labels(design), design.blocks, strict=True))
    if group is None:
        return labelled
    chosen = [entry for entry in labelled if entry[2].group == group]
    if not chosen:
        factors = sorted({block.group for block in design.blocks})
        raise ColumnNotFoundError(
            f"{group!r} is not a grouping factor of the model; its grouping factors are {factors}."
        )
    return chosen


def only_group(design: Design, group: str | None) -> str:
    """Return ``group``, or the model's single grouping factor when ``group`` is None."""
    factors = list(dict.fromkeys(block.group for block in design.blocks))
    if group is not None:
        group_blocks(design, group)
        return group
    if len(factors) != 1:
        raise InputTypeError(
            f"The model has the grouping factors {factors}; pass group= to choose one."
        )
    return factors[0]


def thin_draws(draws: FitDraws, limit: int | None) -> FitDraws:
    """At most ``limit`` draws, evenly spaced over all chains (``draws`` itself when fewer)."""
    if limit is None or draws.n_draws <= limit:
        return draws
    keep = np.unique(np.linspace(0, draws.n_draws - 1, limit).round().astype(int))
    return FitDraws(beta=draws.beta[keep], sigma=draws.sigma[keep],
                    covariances=tuple(c[keep] for c in draws.covariances),
                    effects=tuple(e[keep] for e in draws.effects), design=draws.design, point=draws.point)


def mean_fitted(draws: FitDraws, include_random: bool = True) -> np.ndarray:
    """Posterior mean (or estimate) of the linear predictor per row, shape (n,).

    The linear predictor is linear in beta and the group effects, so its
    mean is the linear predictor of the mean parameters; no (S, n) array is formed.
    """
    means = FitDraws(beta=draws.beta.mean(axis=0, keepdims=True), sigma=draws.sigma[:1],
                     covariances=tuple(c[:1] for c in draws.covariances),
                     effects=tuple(e.mean(axis=0, keepdims=True) for e in draws.effects),
                     design=draws.design, point=True)
    return np.asarray(means.linear_predictor(include_random=include_random)[0])


def _by_chain(values: np.ndarray, chains: int) -> np.ndarray:
    """Reshape chain-major draws (S, ...) to (chains, S // chains, ...)."""
    return values.reshape(chains, values.shape[0] // chains, *values.shape[1:])


def posterior_tree(draws: FitDraws, chains: int | None = None, scale: str = "sd") -> xr.DataTree:
    """The main parameters of a fit's draws as an ArviZ ``DataTree``.

    Parameters
    ----------
    draws : FitDraws
        Posterior draws (chain-major when they come from several chains).
    chains : int, optional
        Number of chains the draws split into; read from the draws when None.
    scale : {"sd", "variance"}
        Store standard deviations (``sd_<block>``, ``sigma``) or variances
        (``var_<block>``, ``sigma2``).

    Returns
    -------
    xarray.DataTree
        A ``posterior`` group with ``fixef`` (dim ``fixef_term``), ``sigma``
        (or ``sigma2``), per block ``sd_<block>`` (or ``var_<block>``, dim
        ``<block>_term``) and, for correlated blocks, ``cor_<block>`` (dim
        ``<block>_pair``, coordinates ``"Intercept,Days"``).

    Raises
    ------
    InputTypeError
        If ``chains`` does not divide the number of draws or ``scale`` is unknown.
    """
    from arviz_base import from_dict

    if scale not in ("sd", "variance"):
        raise InputTypeError(f"scale must be 'sd' or 'variance', got {scale!r}.")
    chains = chains_of(draws) if chains is None else int(chains)
    if chains < 1 or draws.n_draws % chains:
        raise InputTypeError(f"chains={chains} does not split {draws.n_draws} draws into equal chains.")
    design = draws.design
    variables: dict[str, np.ndarray] = {"fixef": _by_chain(draws.beta, chains)}
    dims: dict[str, list[str]] = {"fixef": ["fixef_term"]}
    coords: dict[str, Sequence[str]] = {"fixef_term": list(design.fixed_names)}
    residual = draws.sigma if scale == "sd" else draws.sigma**2
    variables["sigma" if scale == "sd" else "sigma2"] = _by_chain(residual, chains)
    for label, block, covariance in zip(block_labels(design), design.blocks, draws.covariances,
                                        strict=True):
        variance = np.clip(np.diagonal(covariance, axis1=1, axis2=2), 0.0, None)
        name = f"sd_{label}" if scale == "sd" else f"var_{label}"
        variables[name] = _by_chain(np.sqrt(variance) if scale == "sd" else variance, chains)
        dims[name] = [f"{label}_term"]
        coords[f"{label}_term"] = list(block.columns)
        if block.correlated:
            pairs = [(i, j) for i in range(block.q) for j in range(i + 1, block.q)]
            sd = np.sqrt(variance)
            with np.errstate(invalid="ignore", divide="ignore"):
                correlation = np.column_stack(
                    [covariance[:, i, j] / (sd[:, i] * sd[:, j]) for i, j in pairs])
            variables[f"cor_{label}"] = _by_chain(correlation, chains)
            dims[f"cor_{label}"] = [f"{label}_pair"]
            coords[f"{label}_pair"] = [f"{block.columns[i]},{block.columns[j]}" for i, j in pairs]
    return from_dict({"posterior": variables}, dims=dims, coords=coords)


def main_parameter_tree(fit: object, chains: int | None = None) -> xr.DataTree:
    """The posterior of a fit's main parameters (no group effects), with its chains.

    A Bayesian fit's own ``idata`` is used when it has a ``posterior`` group,
    keeping the variables ``fixef``, ``sigma``, ``sd_*`` and ``cor_*``;
    otherwise the tree is built from the fit's draws by :func:`posterior_tree`.

    Parameters
    ----------
    fit : fit result or FitDraws
        A Bayesian fit or its posterior draws.
    chains : int, optional
        Number of chains, for draws without an ``idata``.

    Returns
    -------
    xarray.DataTree
        With a ``posterior`` group.

    Raises
    ------
    InputTypeError
        If the fit holds a point estimate.
    """
    import xarray as xr

    idata = getattr(fit, "idata", None)
    if isinstance(idata, xr.DataTree) and "posterior" in idata.children:
        posterior = idata["posterior"].to_dataset()
        keep = [name for name in posterior.data_vars
                if str(name) in ("fixef", "sigma") or str(name).startswith(("sd_", "cor_"))]
        if keep:
            return xr.DataTree.from_dict({"posterior": posterior[keep]})
    draws = as_draws(fit)
    require_posterior(draws, "This plot")
    return posterior_tree(draws, chains=chains)
