"""The expectations every suite starts with, generated from the table's contract or metadata file:
structure and lineage, keys not null and unique, history invariants, the contract's content rules
(hard in silver, soft in bronze)."""

from __future__ import annotations

from citylake import catalogue
from citylake.config import SourceContract
from quality.tables import BRONZE_LINEAGE, TableSpec


def _e(type_: str, severity: str, notes: str | None = None, **kwargs) -> dict:
    return {"type": type_, "severity": severity, "kwargs": kwargs, "notes": notes}


def _key_rules(key: list[str], severity: str) -> list[dict]:
    rules = [_e("expect_column_values_to_not_be_null", severity, column=k) for k in key]
    if len(key) == 1:
        rules.append(_e("expect_column_values_to_be_unique", severity, column=key[0]))
    else:
        rules.append(_e("expect_compound_columns_to_be_unique", severity, column_list=list(key)))
    return rules


def _content_rules(contract: SourceContract, severity: str, layer: str) -> list[dict]:
    """The contract's per-column rules: what standardize enforces, as expectations."""
    rules: list[dict] = []
    for column in contract.columns:
        name = column.name
        if column.required and name not in contract.business_key:
            rules.append(_e("expect_column_values_to_not_be_null", severity, column=name))
        if column.type == "id_number":
            rules.append(
                _e(
                    "expect_column_values_to_be_valid_id_number",
                    severity,
                    column=name,
                    as_of="$as_of",
                )
            )
        elif column.type == "credit_code":
            rules.append(_e("expect_column_values_to_be_valid_credit_code", severity, column=name))
        elif column.type == "division_code":
            rules.append(
                _e(
                    "expect_column_values_to_be_city_division_code",
                    severity,
                    column=name,
                    division_codes="$city.division_codes",
                )
            )
        elif column.type == "date":
            if layer == "bronze":
                rules.append(_e("expect_column_values_to_be_parseable_date", severity, column=name))
            if not column.future_allowed:  # an expiry (有效期至) may lie ahead
                rules.append(
                    _e(
                        "expect_column_values_to_not_be_in_the_future",
                        severity,
                        column=name,
                        as_of="$as_of",
                    )
                )
        elif column.type == "timestamp":
            # Timestamps are not checked against the delivery date by standardize: a warning.
            rules.append(
                _e(
                    "expect_column_values_to_not_be_in_the_future",
                    "soft",
                    column=name,
                    as_of="$as_of",
                )
            )
        elif column.type == "geometry" and layer == "silver":
            rules.append(_e("expect_column_values_to_be_json_parseable", severity, column=name))
    return rules


def generated_rules(spec: TableSpec) -> list[dict]:
    """What the table's contract or metadata file says, as expectations (dicts of a suite file)."""
    layer, columns = spec.layer, spec.columns
    if layer == "gold":
        return [
            _e("expect_table_columns_to_match_ordered_list", "hard", column_list=list(columns)),
            _e("expect_table_row_count_to_be_between", "hard", min_value=1),
            *[
                _e("expect_column_values_to_not_be_null", "hard", column=c)
                for c in catalogue.LINEAGE
            ],
            *_key_rules(list(spec.key), "hard"),
        ]
    contract = spec.contract
    if layer == "bronze":
        return [
            _e(
                "expect_table_columns_to_match_set",
                "hard",
                column_set=list(columns),
                exact_match=False,
            ),
            _e("expect_table_row_count_to_be_between", "soft", min_value=1),
            *[_e("expect_column_values_to_not_be_null", "hard", column=c) for c in BRONZE_LINEAGE],
            _e(
                "expect_compound_columns_to_be_unique",
                "hard",
                column_list=["_batch_id", "_row_number"],
            ),
            _e("expect_column_values_to_be_null", "soft", column="_malformed_line"),
            *_key_rules(contract.business_key, "soft"),
            *_content_rules(contract, "soft", layer),
        ]
    required = [*contract.column_names, *BRONZE_LINEAGE]
    per_row = [
        *[_e("expect_column_values_to_not_be_null", "hard", column=c) for c in catalogue.LINEAGE],
        *_key_rules(contract.business_key, "hard"),
        *_content_rules(contract, "hard", layer),
    ]
    history = []
    if contract.history:  # the rows rules are about the current versions; the history as a whole
        per_row = [{**rule, "when": {"is_current": True}} for rule in per_row]
        history = [
            _e(
                "expect_history_to_be_consistent",
                "hard",
                "per key: versions that neither overlap nor leave gaps, valid_from < valid_to, "
                "exactly one current row (SCD type 2)",
                key_columns=list(contract.business_key),
            )
        ]
    return [
        _e("expect_table_columns_to_match_set", "hard", column_set=required, exact_match=False),
        _e("expect_table_row_count_to_be_between", "hard", min_value=1),
        *per_row,
        *history,
    ]
