import numpy as np
import pytest

from hierlm.errors import DataError, InputTypeError
from hierlm.plots import plot_correlations, plot_icc, plot_variance_components
from hierlm.results import icc
from hierlm.results.intraclass import icc_draws

from .helpers import scatters, visible_axes


def _point_estimates(figure):
    """x of the point-estimate marker of every panel, in panel order."""
    return np.array([scatters(ax)[0][0, 0] for ax in visible_axes(figure)])


def test_icc_panel_marks_the_posterior_mean_of_the_icc_table(sleep_posterior):
    table = icc(sleep_posterior)
    figure = plot_icc(sleep_posterior)
    (ax,) = visible_axes(figure)
    assert "icc" in ax.get_title() and "Subject" in ax.get_title()
    np.testing.assert_allclose(_point_estimates(figure), table.correlations["mean"].to_numpy())
    assert "adjusted" in figure.get_suptitle()


def test_icc_at_covariate_values(sleep_posterior):
    table = icc(sleep_posterior, at={"Days": 0})
    figure = plot_icc(sleep_posterior, at={"Days": 0})
    np.testing.assert_allclose(_point_estimates(figure), table.correlations["mean"].to_numpy())


def test_crossed_factors_get_one_icc_each(penicillin_posterior):
    sets, values, _ = icc_draws(penicillin_posterior)
    factors = [name for name, _ in sets]
    assert factors == ["plate", "sample"]
    # by hand: each intercept variance over the total, per draw
    plate, sample = (cov[:, 0, 0] for cov in penicillin_posterior.covariances)
    total = plate + sample + penicillin_posterior.sigma**2
    np.testing.assert_allclose(values, np.column_stack([plate / total, sample / total]), rtol=1e-12)
    table = icc(penicillin_posterior)
    figure = plot_icc(penicillin_posterior)
    assert len(visible_axes(figure)) == 2
    np.testing.assert_allclose(_point_estimates(figure), table.correlations.loc[factors, "mean"])


def test_variance_components_mark_mean_sds(sleep_posterior):
    figure = plot_variance_components(sleep_posterior)
    axes = visible_axes(figure)
    titles = [ax.get_title() for ax in axes]
    assert titles == ["sd_Subject\nIntercept", "sd_Subject\nDays", "sigma"]
    sd = np.sqrt(np.diagonal(sleep_posterior.covariances[0], axis1=1, axis2=2)).mean(axis=0)
    np.testing.assert_allclose(_point_estimates(figure), [*sd, sleep_posterior.sigma.mean()])
    figure = plot_variance_components(sleep_posterior, scale="variance")
    np.testing.assert_allclose(_point_estimates(figure)[-1], (sleep_posterior.sigma**2).mean())
    with pytest.raises(InputTypeError, match="scale"):
        plot_variance_components(sleep_posterior, scale="log")


def test_correlation_panel_with_zero_line(sleep_posterior):
    cov = sleep_posterior.covariances[0]
    correlation = cov[:, 0, 1] / np.sqrt(cov[:, 0, 0] * cov[:, 1, 1])
    figure = plot_correlations(sleep_posterior)
    (ax,) = visible_axes(figure)
    assert ax.get_title() == "cor_Subject\nIntercept,Days"
    np.testing.assert_allclose(_point_estimates(figure), [correlation.mean()])
    assert any(np.allclose(line.get_xdata(), 0.0) and line.get_linestyle() == "--" for line in ax.lines)


def test_no_correlations_and_point_fits_are_refused(sleep_reml, penicillin_posterior):
    with pytest.raises(DataError, match="no correlated"):
        plot_correlations(penicillin_posterior)
    for plot in (plot_icc, plot_variance_components, plot_correlations):
        with pytest.raises(InputTypeError, match="posterior draws"):
            plot(sleep_reml)
