"""The Markdown table both reports and the comparison use, and the CSV's end-to-end latency columns
(a model's row, a variant's and a sweep point's)."""

from __future__ import annotations


def md_table(headers: list[str], rows: list[list]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join("" if c is None else str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


# CSV column -> the latency statistic it holds
E2E_CSV_COLUMNS = {
    "e2e_median_s": "median",
    "e2e_ci95_low_s": "ci95_low",
    "e2e_ci95_high_s": "ci95_high",
    "e2e_p90_s": "p90",
    "e2e_mean_s": "mean",
    "e2e_std_s": "std",
    "e2e_cov": "cov",
}


def e2e_csv_values(stats) -> dict:
    """The end-to-end latency columns of a CSV row from a LatencyStats record; None for each when
    nothing was timed (no record)."""
    return {column: getattr(stats, key) if stats is not None else None for column, key in E2E_CSV_COLUMNS.items()}
