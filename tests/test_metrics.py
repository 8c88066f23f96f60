"""Image-level metrics in one process: values, deduplication, logistic fit, degenerate
inputs and the scatter plot. The 2-process run is in ``test_metrics_ddp.py``."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from matplotlib.image import imread
from scipy import stats

from iqa.metrics import KRCC, PLCC, RMSE, SRCC, IQAMetrics
from iqa.metrics.logistic import fit_logistic, logistic4, map_to_mos
from iqa.metrics.plots import scatter_plot

PREDS = torch.tensor([3.97, 3.05, 1.16, 1.54, 3.07, 1.17, 3.95], dtype=torch.float64)
MOS = torch.tensor([3.27, 2.72, 1.38, 2.39, 3.49, 1.09, 4.5], dtype=torch.float64)
IDS = torch.arange(7)
KEYS = ("srcc", "plcc", "plcc_raw", "krcc", "rmse")


def computed(metric, *updates) -> dict[str, float] | float:
    for update in updates:
        metric.update(*update)
    values = metric.compute()
    return {k: float(v) for k, v in values.items()} if isinstance(values, dict) else float(values)


def test_values_match_scipy_and_single_metrics_match_the_combined_one():
    values = computed(IQAMetrics(), (PREDS, MOS, IDS))
    mapped = map_to_mos(PREDS.numpy(), MOS.numpy())
    assert values["srcc"] == pytest.approx(stats.spearmanr(PREDS, MOS).statistic, abs=1e-12)
    assert values["krcc"] == pytest.approx(stats.kendalltau(PREDS, MOS).statistic, abs=1e-12)
    assert values["plcc_raw"] == pytest.approx(stats.pearsonr(PREDS, MOS).statistic, abs=1e-12)
    assert values["plcc"] == pytest.approx(stats.pearsonr(mapped, MOS).statistic, abs=1e-12)
    assert values["rmse"] == pytest.approx(np.sqrt(np.mean((mapped - MOS.numpy()) ** 2)), abs=1e-12)
    assert values["n_images"] == 7
    for metric, key in ((SRCC(), "srcc"), (KRCC(), "krcc"), (PLCC(), "plcc"), (PLCC(logistic_fit=False), "plcc_raw"),
                        (RMSE(), "rmse")):
        assert computed(metric, (PREDS, MOS, IDS)) == values[key], key


def test_logistic_mapping_removes_a_monotone_nonlinearity():
    preds = torch.linspace(-3, 3, 40, dtype=torch.float64)
    mos = torch.from_numpy(logistic4(preds.numpy(), 90.0, 10.0, 0.5, 0.7))
    values = computed(IQAMetrics(), (preds, mos, torch.arange(40)))
    assert values["plcc"] == pytest.approx(1.0, abs=1e-9) and values["rmse"] < 1e-3
    assert values["plcc_raw"] < 0.98 and values["srcc"] == pytest.approx(1.0)


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_fit_recovers_increasing_and_decreasing_curves(sign):
    x = np.linspace(20, 80, 60)
    mos = logistic4(sign * x, 4.5, 1.2, sign * 50.0, 6.0)
    assert np.allclose(logistic4(x, *fit_logistic(x, mos)), mos, atol=1e-4)


def test_rmse_is_in_mos_units_and_correlations_are_scale_free():
    small = computed(IQAMetrics(), (PREDS, MOS, IDS))
    large = computed(IQAMetrics(), (PREDS * 20, MOS * 20, IDS))
    assert large["rmse"] == pytest.approx(20 * small["rmse"], rel=1e-5)
    for key in ("srcc", "krcc", "plcc", "plcc_raw"):
        assert large[key] == pytest.approx(small[key], abs=1e-6)


def test_padding_duplicates_count_once_and_update_order_does_not_matter():
    reference = computed(IQAMetrics(), (PREDS, MOS, IDS))
    order = torch.tensor([6, 2, 0, 5, 1, 4, 3])
    padded = computed(IQAMetrics(), (PREDS[order], MOS[order], IDS[order]), (PREDS[:2], MOS[:2], IDS[:2]))
    assert padded == reference


def test_an_id_with_two_mos_values_is_an_error():
    metric = IQAMetrics()
    metric.update(PREDS, MOS, IDS)
    metric.update(PREDS[:1], MOS[:1] + 1, IDS[:1])
    with pytest.raises(ValueError, match="image id 0 has several MOS values"):
        metric.compute()


@pytest.mark.parametrize(
    "preds, mos",
    [(PREDS[:1], MOS[:1]), (torch.ones(7), MOS), (PREDS, torch.full((7,), 3.0))],
    ids=["one image", "constant predictions", "constant MOS"],
)
def test_degenerate_inputs_give_nan(preds, mos):
    values = computed(IQAMetrics(), (preds, mos, torch.arange(len(preds))))
    assert all(math.isnan(values[key]) for key in KEYS) and values["n_images"] == len(preds)
    for metric in (SRCC(), KRCC(), PLCC(), RMSE()):
        assert math.isnan(computed(metric, (preds, mos, torch.arange(len(preds)))))


def test_metric_without_updates_gives_nan():
    with pytest.warns(UserWarning, match="called before the ``update``"):
        values = IQAMetrics().compute()
    assert math.isnan(float(values["srcc"])) and int(values["n_images"]) == 0


def test_scatter_plot_writes_a_png(tmp_path):
    path = scatter_plot(PREDS.numpy(), MOS.numpy(), tmp_path / "scatter.png", title="koniq (test)")
    height, width, _ = imread(path).shape
    assert (width, height) == (540, 480)
    constant = scatter_plot(np.ones(3), MOS.numpy()[:3], tmp_path / "constant.png")
    assert constant.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plcc_has_the_sign_of_srcc_even_when_a_rising_curve_would_fit_better():
    """A model that ranks most images backwards but gets the extremes right: an
    unconstrained logistic can rise through it (PLCC > 0 beside SRCC < 0)."""
    rng = np.random.default_rng(0)
    mos = np.linspace(1, 5, 60)
    preds = -mos + rng.normal(0, 0.3, 60)
    preds[:4], preds[-4:] = -10.0, 10.0  # the four worst scored lowest, the four best highest
    values = computed(IQAMetrics(), (torch.from_numpy(preds), torch.from_numpy(mos), torch.arange(60)))
    params = fit_logistic(preds, mos)
    assert params[0] <= params[1]  # β1 <= β2: the fitted curve decreases, like the ranking
    assert values["srcc"] < 0 and values["plcc"] < 0
    assert values["plcc"] == pytest.approx(-stats.pearsonr(logistic4(preds, *params), mos).statistic, abs=1e-12)


def test_when_the_logistic_fit_is_impossible_the_mapping_is_linear_and_silent(recwarn):
    preds, mos = np.array([1.0, 2.0, 4.0]), np.array([10.0, 30.0, 50.0])
    mapped = map_to_mos(preds, mos)
    slope, intercept = np.polyfit(preds, mos, 1)
    assert np.allclose(mapped, slope * preds + intercept)
    assert not [w for w in recwarn if "logistic" in str(w.message)]
