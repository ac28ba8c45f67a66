"""The period a flat table's churn column covers (data.label.period_months): required, carried into the label
as horizon_days, and used by monthly retention, lifetime and lifetime value."""

from __future__ import annotations

import numpy as np
import pytest

from churnwise.settings import check_settings, with_label_period
from decisions.value import lifetime_value, monthly_retention
from features.errors import ConfigError
from features.labels import LabelWindow
from features.snapshot import LabelPeriod, label_period
from models.training import population_description

SNAPSHOT = (
    "data=snapshot", "data.path=churn.csv", "data.id_column=id", "data.label.column=left",
    "data.label.positive=1", "data.label.negative=0",
)  # fmt: skip


def test_a_26_percent_churn_over_12_months_is_about_97_5_percent_monthly_retention(make_cfg) -> None:
    cfg = with_label_period(make_cfg(*SNAPSHOT, "data.label.period_months=12", debug=False))
    assert (
        LabelWindow.from_config(cfg.label).approx_days == 365.25
        and cfg.label.period_months == 12
        and cfg.label.period_assumed is False
    )

    # by hand: r = 0.74 ** (1 / 12) = exp(ln 0.74 / 12) = 0.975220 a month (not 0.74)
    r = monthly_retention(np.array([0.26]), horizon_days=LabelWindow.from_config(cfg.label).approx_days)[0]
    assert r == pytest.approx(0.975220, abs=1e-6)
    # CLV = m r / (1 + d - r) with m = 0.5 x 100 a month, d = 0: 50 x 0.97522 / 0.02478 = 1,968 (not 142)
    clv = lifetime_value(
        np.array([0.26]), np.array([100.0]), horizon_days=LabelWindow.from_config(cfg.label).approx_days, margin_rate=0.5,
        annual_discount_rate=0.0,
    )[0]  # fmt: skip
    assert clv == pytest.approx(50 * 0.975220 / (1 - 0.975220), rel=1e-4)
    # expected lifetime 1 / (1 - r) months: about 40 months, where a one-month period would say 1.35
    assert 1 / (1 - r) == pytest.approx(40.4, abs=0.5)
    assert "left within 12 months (365 days)" in population_description(cfg.label)

    monthly = with_label_period(make_cfg(*SNAPSHOT, "data.label.period_months=1", debug=False))
    assert LabelWindow.from_config(monthly.label).approx_days == pytest.approx(30.4375)
    assert monthly_retention(
        np.array([0.26]), horizon_days=LabelWindow.from_config(monthly.label).approx_days
    )[0] == pytest.approx(0.74)


def test_a_snapshot_without_its_period_stops_naming_data_label_period_months(make_cfg) -> None:
    cfg = make_cfg(*SNAPSHOT, debug=False)
    for stage in ("validate", "features", "train", "tune", "score", "report"):
        with pytest.raises(ConfigError, match=r"data\.label\.period_months is not set: the period the churn"):
            check_settings(cfg, stage)
    with pytest.raises(ConfigError, match=r"data\.label\.period_months"):
        with_label_period(cfg)
    with pytest.raises(ConfigError, match=r"data\.label\.period_months: 0 is not a number of months"):
        check_settings(make_cfg(*SNAPSHOT, "data.label.period_months=0", debug=False), "train")
    # a label computed from dated tables has its own window: nothing asked
    check_settings(make_cfg("data=demo_debug", debug=False), "train")


def test_assume_accepts_one_month_and_says_so(make_cfg) -> None:
    cfg = with_label_period(make_cfg(*SNAPSHOT, "data.label.assume=true", debug=False))
    assert (
        LabelWindow.from_config(cfg.label).approx_days == pytest.approx(30.4375)
        and cfg.label.period_assumed is True
    )
    assert "1 month (30 days), assumed" in population_description(cfg.label)
    assert label_period({"period_months": 6}) == LabelPeriod(6.0) and round(LabelPeriod(6.0).days) == 183
    with pytest.raises(ConfigError, match=r"data\.label\.assume must be true or false"):
        label_period({"assume": "yes"})


def test_label_horizon_days_is_not_a_second_way_to_set_the_period(make_cfg) -> None:
    cfg = make_cfg(*SNAPSHOT, "data.label.period_months=12", "label.horizon_days=30", debug=False)
    with pytest.raises(
        ConfigError, match=r"label\.horizon_days: 30 days, but data\.label\.period_months says 12"
    ):
        with_label_period(cfg)
    telco = with_label_period(make_cfg("data=telco", debug=False))
    assert (
        telco.label.period_months == 12 and LabelWindow.from_config(telco.label).approx_days == 365.25
    )  # the demo states its period
    assert with_label_period(telco) == telco  # a stage that calls another derives nothing twice
