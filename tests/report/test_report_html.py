import json
from html.parser import HTMLParser

import pytest

from recsys_peft.report import collect, render, write_report
from tests.report.conftest import SEGMENTS


class DataValues(HTMLParser):
    """Collect ``data-key``/``data-value`` pairs, the ids of svg elements, and the text of each keyed cell."""

    def __init__(self) -> None:
        super().__init__()
        self.values: dict[str, str] = {}
        self.texts: dict[str, str] = {}
        self.svg_ids: list[str] = []
        self.bars = 0
        self._open: str | None = None

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "svg":
            self.svg_ids.append(attributes.get("id", ""))
        if tag == "rect" and attributes.get("class") == "bar":
            self.bars += 1
        if "data-key" in attributes:
            self.values[attributes["data-key"]] = attributes["data-value"]
            self._open = attributes["data-key"]

    def handle_data(self, data):
        if self._open is not None:
            self.texts[self._open] = self.texts.get(self._open, "") + data

    def handle_endtag(self, tag):
        self._open = None


def parse(page: str) -> DataValues:
    parser = DataValues()
    parser.feed(page)
    return parser


def lookup(metrics: dict, key: str):
    value = metrics
    for part in key.split("."):
        value = value[part]
    return value


def check_numbers(parsed: DataValues, metrics: dict) -> None:
    """Every keyed number in the page equals the metrics file, in full precision and as printed."""
    for key, text in parsed.values.items():
        expected = lookup(metrics, key)
        assert json.loads(text) == expected, key
        if isinstance(expected, float):
            assert parsed.texts[key].strip().lstrip("+") == f"{expected:.4f}".lstrip("+"), key


def test_numbers_equal_metrics(work_dir):
    metrics = json.loads((work_dir / "metrics.json").read_text())

    parsed = parse(render(collect(work_dir)))

    check_numbers(parsed, metrics)
    for name in SEGMENTS:
        for model in ("base", "adapted"):
            assert f"segments.{name}.{model}.ndcg@10" in parsed.values
    assert "overall.paired_ndcg@10.mean_diff" in parsed.values
    assert "base_parameters" in parsed.values


def test_charts_present(work_dir):
    parsed = parse(render(collect(work_dir)))

    assert parsed.svg_ids == ["chart-segment-ndcg", "chart-train-loss", "chart-valid-ndcg"]
    assert parsed.bars == 2 * len(SEGMENTS)


def test_page_is_self_contained(work_dir):
    page = render(collect(work_dir))

    assert "<script" not in page
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in page


def test_sample_users_show_history_and_lists(work_dir):
    inputs = collect(work_dir)

    assert [(u.user_id, u.segment) for u in inputs.samples] == [("u3", "F:25-34"), ("u7", "M:18-24")]
    for user in inputs.samples:
        assert [r["rank"] for r in user.recommendations] == [1, 2, 3]
        assert 1 <= len(user.history) <= 5
        assert user.held_out is not None
        # Newest first, and all before the held-out test event.
        times = [h["time"] for h in user.history]
        assert times == sorted(times, reverse=True)
        assert all(t <= user.held_out["time"] for t in times)


def test_write_report_default_path(work_dir):
    path = write_report(work_dir)

    assert path == work_dir / "report.html"
    assert path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_missing_metrics_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"metrics\.json is missing"):
        collect(tmp_path)


def test_escapes_segment_names(work_dir):
    metrics = json.loads((work_dir / "metrics.json").read_text())
    metrics["segments"]["<b>x</b>"] = metrics["segments"].pop("M:35-44")
    (work_dir / "metrics.json").write_text(json.dumps(metrics))

    page = render(collect(work_dir))

    assert "<b>x</b>" not in page
    assert "&lt;b&gt;x&lt;/b&gt;" in page
