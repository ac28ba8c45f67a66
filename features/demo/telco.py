"""A synthetic churn table in the public telecom churn layout ("Telco Customer Churn"), with a known mechanism.

It lets a new user try ``data=snapshot`` without downloading anything. The columns, their order and the
spelling of every value follow the widely used public file (7,043 customers, one row each): ``customerID``,
demographics, ``tenure`` in months, the services held, contract and billing, ``MonthlyCharges``,
``TotalCharges`` (a single space ``" "`` for customers with ``tenure`` 0, as in the public file) and
``Churn``. The marginals are close to the public data: churn about 26.5%, Month-to-month about 55%,
Fiber optic about 44%, DSL about 34%, no internet about 22%, seniors about 16%, and about 0.16% of
customers with tenure 0 (``ceil(0.0016 * n)`` of them, forced, so even a small file has a few).

How customers are drawn, in order: senior citizen; internet service (seniors lean to fiber); contract
(fiber leans to month-to-month, no internet to two-year); tenure from a contract-specific Beta times 72;
partner (more likely with longer tenure) and dependents (much more likely with a partner); phone service
(only DSL customers go without); multiple lines; the six internet add-ons (likelier on longer contracts);
paperless billing; payment method (electronic check is common on month-to-month); and the monthly charge
as the sum of the prices of the services held plus noise (see :data:`SERVICE_PRICES`).

The churn mechanism, fixed and known (coefficients in :data:`CHURN_LOGIT`)::

    logit = -0.14                                   intercept: expected churn ~26.5% at the default size
            + 0.45 * [Contract = Month-to-month]
            - 0.55 * [Contract = One year]
            - 1.70 * [Contract = Two year]
            - 0.55 * log1p(tenure)
            + 0.80 * [InternetService = Fiber optic]
            + 0.45 * [PaymentMethod = Electronic check]
            - 0.50 * [OnlineSecurity = Yes]
            - 0.45 * [TechSupport = Yes]
            + 0.35 * [PaperlessBilling = Yes]
            + 0.30 * SeniorCitizen
            - 0.25 * [Dependents = Yes]
            + 0.010 * (MonthlyCharges - 65)
    Churn ~ Bernoulli(sigmoid(logit))

Everything comes from one ``numpy.random.default_rng(seed)``, so the same :class:`TelcoSpec` gives the
same table, and :func:`generate_telco` the same bytes.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from features.errors import ConfigError
from features.publish import publish_files

logger = logging.getLogger(__name__)

COLUMNS: tuple[str, ...] = (
    "customerID",
    "gender",
    "SeniorCitizen",
    "Partner",
    "Dependents",
    "tenure",
    "PhoneService",
    "MultipleLines",
    "InternetService",
    "OnlineSecurity",
    "OnlineBackup",
    "DeviceProtection",
    "TechSupport",
    "StreamingTV",
    "StreamingMovies",
    "Contract",
    "PaperlessBilling",
    "PaymentMethod",
    "MonthlyCharges",
    "TotalCharges",
    "Churn",
)
"""The columns of the public file, in its order."""

INTERNET_ADDONS: tuple[str, ...] = (
    "OnlineSecurity",
    "OnlineBackup",
    "DeviceProtection",
    "TechSupport",
    "StreamingTV",
    "StreamingMovies",
)
"""Services that need internet; each is Yes, No or "No internet service"."""

INTERNET_SERVICES: tuple[str, ...] = ("DSL", "Fiber optic", "No")
CONTRACTS: tuple[str, ...] = ("Month-to-month", "One year", "Two year")
PAYMENT_METHODS: tuple[str, ...] = (
    "Electronic check",
    "Mailed check",
    "Bank transfer (automatic)",
    "Credit card (automatic)",
)
NO_PHONE = "No phone service"
NO_INTERNET = "No internet service"
BLANK_TOTAL = " "
"""What ``TotalCharges`` holds for customers with tenure 0 (never billed), as in the public file."""

MONTHLY_CHARGE_RANGE: tuple[float, float] = (18.25, 118.75)
TENURE_MAX_MONTHS = 72
TENURE_ZERO_SHARE = 0.0016
"""Share of customers forced to tenure 0 (rounded up, so at least one in each file)."""

SENIOR_SHARE = 0.16
MALE_SHARE = 0.505
INTERNET_SHARES: Mapping[bool, tuple[float, float, float]] = {  # by SeniorCitizen; DSL, Fiber, No
    False: (0.362, 0.394, 0.244),
    True: (0.25, 0.68, 0.07),
}
CONTRACT_SHARES: Mapping[str, tuple[float, float, float]] = {  # by InternetService
    "DSL": (0.52, 0.23, 0.25),
    "Fiber optic": (0.69, 0.18, 0.13),
    "No": (0.34, 0.21, 0.45),
}
TENURE_BETA: Mapping[str, tuple[float, float]] = {  # by Contract: tenure = 72 * Beta(a, b), at least 1
    "Month-to-month": (0.6, 1.8),
    "One year": (1.3, 1.0),
    "Two year": (2.2, 0.6),
}
NO_PHONE_SHARE_DSL = 0.28
MULTIPLE_LINES_SHARE: Mapping[str, float] = {"DSL": 0.36, "Fiber optic": 0.65, "No": 0.25}
ADDON_SHARES: Mapping[str, Mapping[str, float]] = {  # among internet customers, by InternetService
    "OnlineSecurity": {"DSL": 0.52, "Fiber optic": 0.26},
    "OnlineBackup": {"DSL": 0.45, "Fiber optic": 0.40},
    "DeviceProtection": {"DSL": 0.40, "Fiber optic": 0.43},
    "TechSupport": {"DSL": 0.50, "Fiber optic": 0.27},
    "StreamingTV": {"DSL": 0.35, "Fiber optic": 0.64},
    "StreamingMovies": {"DSL": 0.35, "Fiber optic": 0.64},
}
ADDON_CONTRACT_SHIFT: Mapping[str, float] = {"Month-to-month": -0.05, "One year": 0.06, "Two year": 0.10}
PAPERLESS_SHARE: Mapping[str, float] = {"DSL": 0.53, "Fiber optic": 0.77, "No": 0.30}
PAYMENT_SHARES: Mapping[str, tuple[float, float, float, float]] = {  # by Contract, in PAYMENT_METHODS order
    "Month-to-month": (0.49, 0.23, 0.14, 0.14),
    "One year": (0.19, 0.23, 0.29, 0.29),
    "Two year": (0.07, 0.22, 0.35, 0.36),
}

SERVICE_PRICES: Mapping[str, float] = {
    "PhoneService": 19.0,
    "MultipleLines": 5.0,
    "DSL": 24.0,
    "Fiber optic": 50.0,
    "OnlineSecurity": 5.0,
    "OnlineBackup": 5.0,
    "DeviceProtection": 5.0,
    "TechSupport": 5.0,
    "StreamingTV": 10.0,
    "StreamingMovies": 10.0,
}
"""Monthly list price of each service; the charge is their sum plus Normal(1, 1.5) noise, in 5-cent steps."""

TOTAL_CHARGE_NOISE_SD = 0.03
"""Relative noise of TotalCharges around tenure * MonthlyCharges (price changes over the customer's life)."""

CHURN_LOGIT: Mapping[str, float] = {
    "intercept": -0.14,
    "Contract=Month-to-month": 0.45,
    "Contract=One year": -0.55,
    "Contract=Two year": -1.70,
    "log1p(tenure)": -0.55,
    "InternetService=Fiber optic": 0.80,
    "PaymentMethod=Electronic check": 0.45,
    "OnlineSecurity=Yes": -0.50,
    "TechSupport=Yes": -0.45,
    "PaperlessBilling=Yes": 0.35,
    "SeniorCitizen": 0.30,
    "Dependents=Yes": -0.25,
    "MonthlyCharges-65": 0.010,
}
"""Coefficients of the true churn logit (see the module docstring)."""


@dataclass(frozen=True)
class TelcoSpec:
    """Size and seed of a synthetic telecom churn table."""

    n_customers: int = 7043
    score_customers: int = 1000  # extra customers written without the Churn column, for scoring
    seed: int = 42

    def __post_init__(self) -> None:
        """Reject sizes that cannot make a table."""
        if self.n_customers < 1:
            raise ValueError(f"n_customers must be at least 1, got {self.n_customers}")
        if self.score_customers < 0:
            raise ValueError(f"score_customers must not be negative, got {self.score_customers}")


@dataclass(frozen=True)
class TelcoSummary:
    """What :func:`generate_telco` wrote."""

    path: Path
    score_path: Path
    rows: int
    score_rows: int
    churn_rate: float


def score_path_for(path: Path) -> Path:
    """The to-score file written beside ``path``: ``<stem>_to_score.csv``."""
    return path.with_name(f"{path.stem}_to_score.csv")


def sidecar_path_for(path: Path) -> Path:
    """The marker ``<path>.generated.json`` that says the generator owns ``path``."""
    return path.with_name(f"{path.name}.generated.json")


def telco_frame(spec: TelcoSpec) -> tuple[pd.DataFrame, np.ndarray]:
    """All ``n_customers + score_customers`` customers, with Churn, and their true churn probabilities.

    The first ``n_customers`` rows are the training customers, the rest the customers to score; the
    tenure-0 rows are forced separately in each part so both files hold a few blank TotalCharges.
    """
    rng = np.random.default_rng(spec.seed)
    n = spec.n_customers + spec.score_customers

    customer_id = _customer_ids(rng, n)
    male = rng.random(n) < MALE_SHARE
    senior = rng.random(n) < SENIOR_SHARE
    internet = np.where(
        senior,
        _choose(rng, INTERNET_SERVICES, INTERNET_SHARES[True], n),
        _choose(rng, INTERNET_SERVICES, INTERNET_SHARES[False], n),
    )
    contract = _choose_by(rng, CONTRACTS, CONTRACT_SHARES, internet)

    tenure = np.zeros(n, dtype=np.int64)
    for name, (a, b) in TENURE_BETA.items():
        months = np.rint(TENURE_MAX_MONTHS * rng.beta(a, b, size=n)).astype(np.int64)
        tenure = np.where(contract == name, np.clip(months, 1, TENURE_MAX_MONTHS), tenure)
    for start, size in ((0, spec.n_customers), (spec.n_customers, spec.score_customers)):
        if size:
            never_billed = rng.choice(size, size=math.ceil(size * TENURE_ZERO_SHARE), replace=False)
            tenure[start + never_billed] = 0

    partner = rng.random(n) < 0.33 + 0.30 * tenure / TENURE_MAX_MONTHS
    dependents = rng.random(n) < np.where(partner, 0.52, 0.10) * np.where(senior, 0.5, 1.0)

    has_internet = internet != "No"
    phone = ~((internet == "DSL") & (rng.random(n) < NO_PHONE_SHARE_DSL))
    multiple_lines = phone & (rng.random(n) < _lookup(MULTIPLE_LINES_SHARE, internet))
    shift = _lookup(ADDON_CONTRACT_SHIFT, contract)
    addons = {}
    for addon, shares in ADDON_SHARES.items():
        share = np.where(internet == "Fiber optic", shares["Fiber optic"], shares["DSL"]) + shift
        addons[addon] = has_internet & (rng.random(n) < share)
    paperless = rng.random(n) < _lookup(PAPERLESS_SHARE, internet)
    payment = _choose_by(rng, PAYMENT_METHODS, PAYMENT_SHARES, contract)

    list_price = (
        SERVICE_PRICES["PhoneService"] * phone
        + SERVICE_PRICES["MultipleLines"] * multiple_lines
        + SERVICE_PRICES["DSL"] * (internet == "DSL")
        + SERVICE_PRICES["Fiber optic"] * (internet == "Fiber optic")
        + sum(SERVICE_PRICES[addon] * held for addon, held in addons.items())
    )
    low, high = MONTHLY_CHARGE_RANGE
    nickels = np.rint(np.clip(list_price + rng.normal(1.0, 1.5, size=n), low, high) * 20).astype(np.int64)
    monthly_cents = nickels * 5
    monthly = monthly_cents / 100  # correctly rounded, so the CSV shows at most 2 decimals
    drift = np.clip(rng.normal(1.0, TOTAL_CHARGE_NOISE_SD, size=n), 0.9, 1.1)
    total_cents = np.where(tenure <= 1, tenure * monthly_cents, np.rint(tenure * monthly_cents * drift))
    total = [
        BLANK_TOTAL if months == 0 else str(float(cents) / 100)
        for months, cents in zip(tenure, total_cents, strict=True)
    ]

    logit = (
        CHURN_LOGIT["intercept"]
        + CHURN_LOGIT["Contract=Month-to-month"] * (contract == "Month-to-month")
        + CHURN_LOGIT["Contract=One year"] * (contract == "One year")
        + CHURN_LOGIT["Contract=Two year"] * (contract == "Two year")
        + CHURN_LOGIT["log1p(tenure)"] * np.log1p(tenure)
        + CHURN_LOGIT["InternetService=Fiber optic"] * (internet == "Fiber optic")
        + CHURN_LOGIT["PaymentMethod=Electronic check"] * (payment == "Electronic check")
        + CHURN_LOGIT["OnlineSecurity=Yes"] * addons["OnlineSecurity"]
        + CHURN_LOGIT["TechSupport=Yes"] * addons["TechSupport"]
        + CHURN_LOGIT["PaperlessBilling=Yes"] * paperless
        + CHURN_LOGIT["SeniorCitizen"] * senior
        + CHURN_LOGIT["Dependents=Yes"] * dependents
        + CHURN_LOGIT["MonthlyCharges-65"] * (monthly - 65.0)
    )
    churn_probability = 1.0 / (1.0 + np.exp(-logit))
    churn = rng.random(n) < churn_probability

    frame = pd.DataFrame(
        {
            "customerID": customer_id,
            "gender": np.where(male, "Male", "Female"),
            "SeniorCitizen": senior.astype(np.int64),
            "Partner": _yes_no(partner),
            "Dependents": _yes_no(dependents),
            "tenure": tenure,
            "PhoneService": _yes_no(phone),
            "MultipleLines": np.where(phone, _yes_no(multiple_lines), NO_PHONE),
            "InternetService": internet,
            **{addon: np.where(has_internet, _yes_no(held), NO_INTERNET) for addon, held in addons.items()},
            "Contract": contract,
            "PaperlessBilling": _yes_no(paperless),
            "PaymentMethod": payment,
            "MonthlyCharges": monthly,
            "TotalCharges": total,
            "Churn": _yes_no(churn),
        },
        columns=list(COLUMNS),
    )
    return frame, churn_probability


TELCO_TRUTH_FILE = "true_snapshot_probability.parquet"
"""The truth file in ``truth_dir``: customer_id (the customerID) and p_churn, the probability Churn was drawn
with, for every training row. Only evaluation reads it; features never do."""


def generate_telco(spec: TelcoSpec, path: Path, truth_dir: Path | None = None) -> TelcoSummary:
    """Write the training CSV to ``path``, ``<stem>_to_score.csv`` beside it, and the ownership sidecar; with
    ``truth_dir``, also the true churn probability of every training row there (:data:`TELCO_TRUTH_FILE`).

    The training file holds the first ``n_customers`` customers with Churn; the to-score file the other
    ``score_customers`` without it. Each file is written to a hidden temp file in the same folder and
    renamed into place. An existing ``path`` (or to-score file) without the sidecar is not ours: refuse.
    """
    path = Path(path)
    score_path = score_path_for(path)
    sidecar = sidecar_path_for(path)
    if not sidecar.exists():
        for existing in (path, score_path):
            if existing.exists():
                raise ConfigError(
                    f"{existing} exists already and is not generated data (no {sidecar.name} beside it); "
                    "refusing to overwrite it: point data.path at a new file, or move the existing one"
                )
    frame, churn_probability = telco_frame(spec)
    training = frame.iloc[: spec.n_customers]
    to_score = frame.iloc[spec.n_customers :].drop(columns="Churn")
    churn_rate = float((training["Churn"] == "Yes").mean())
    marker = {
        "spec": asdict(spec),
        "rows": len(training),
        "score_path": score_path.name,
        "score_rows": len(to_score),
    }
    writers = {  # the sidecar first, so a crash between renames never leaves our data looking foreign
        sidecar: lambda temp: temp.write_text(json.dumps(marker, indent=2, sort_keys=True) + "\n"),
        score_path: lambda temp: _write_csv(to_score, temp),
        path: lambda temp: _write_csv(training, temp),
    }
    if truth_dir is not None:
        truth = pd.DataFrame(
            {"customer_id": training["customerID"], "p_churn": churn_probability[: spec.n_customers]}
        )
        Path(truth_dir).mkdir(parents=True, exist_ok=True)
        writers[Path(truth_dir) / TELCO_TRUTH_FILE] = lambda temp: truth.to_parquet(temp, index=False)
    publish_files(writers, None)  # guarded by the sidecar: a file without one is not ours, refused above
    logger.info(
        "Wrote %d customers (churn rate %.3f) to %s and %d to score to %s",
        len(training),
        churn_rate,
        path,
        len(to_score),
        score_path,
    )
    return TelcoSummary(
        path=path, score_path=score_path, rows=len(training), score_rows=len(to_score), churn_rate=churn_rate
    )


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    # Blank TotalCharges are the string " ", which the csv module leaves unquoted: `..., ,No`.
    frame.to_csv(path, index=False, lineterminator="\n")


def _customer_ids(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` unique ids like ``7590-VHVEG``: four digits, a dash, five uppercase letters."""
    ids: list[str] = []
    seen: set[str] = set()
    while len(ids) < n:
        wanted = n - len(ids)
        digits = rng.integers(0, 10_000, size=wanted)
        letters = rng.integers(0, 26, size=(wanted, 5)) + ord("A")
        for number, codes in zip(digits, letters, strict=True):
            candidate = f"{number:04d}-{''.join(map(chr, codes))}"
            if candidate not in seen:
                seen.add(candidate)
                ids.append(candidate)
    return np.array(ids, dtype=object)


def _choose(
    rng: np.random.Generator, values: tuple[str, ...], shares: tuple[float, ...], n: int
) -> np.ndarray:
    return np.asarray(values, dtype=object)[rng.choice(len(values), size=n, p=shares)]


def _choose_by(
    rng: np.random.Generator,
    values: tuple[str, ...],
    shares_by: Mapping[str, tuple[float, ...]],
    condition: np.ndarray,
) -> np.ndarray:
    """One draw of ``values`` per row, with shares that depend on the row's ``condition``."""
    drawn = np.empty(len(condition), dtype=object)
    for level, shares in shares_by.items():
        picks = _choose(rng, values, shares, len(condition))
        drawn = np.where(condition == level, picks, drawn)
    return drawn


def _lookup(table: Mapping[str, float], keys: np.ndarray) -> np.ndarray:
    return np.array([table[key] for key in keys], dtype=float)


def _yes_no(flags: np.ndarray) -> np.ndarray:
    return np.where(flags, "Yes", "No").astype(object)
