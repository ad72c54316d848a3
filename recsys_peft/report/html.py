"""Render the report's inputs as one self-contained HTML page: inline CSS and SVG, no script.

Every metric printed from ``metrics.json`` carries ``data-key`` (its path in the JSON, dot-separated)
and ``data-value`` (the full-precision value), so a test or a script can check the page against
the metrics file.
"""

from __future__ import annotations

import json
from html import escape

from recsys_peft.report.inputs import ReportInputs, SampleUser
from recsys_peft.report.svg import Series, interval_bar_chart, line_chart

STYLE = """
body { font-family: sans-serif; margin: 2em auto; max-width: 980px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: right; }
th:first-child, td:first-child, td.text { text-align: left; }
.muted { color: #666; font-size: 0.9em; } .hit { font-weight: bold; color: #b35900; }
.charts { display: flex; flex-wrap: wrap; gap: 1em; } pre { background: #f6f6f6; padding: 0.8em; overflow: auto; }
"""


def _metric(key: str, value: float | int | None, digits: int = 4) -> str:
    if value is None:
        return "<td>-</td>"
    text = f"{value:.{digits}f}" if isinstance(value, float) else str(value)
    return f"<td data-key='{escape(key)}' data-value='{value!r}'>{text}</td>"


def _interval(key: str, bounds: list[float] | None) -> str:
    if not bounds:
        return "<td>-</td>"
    return (f"<td data-key='{escape(key)}' data-value='{json.dumps(bounds)}'>"
            f"[{bounds[0]:.4f}, {bounds[1]:.4f}]</td>")


def _table(headers: list[str], rows: list[str], table_id: str) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    return f"<table id='{table_id}'><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _metrics_section(metrics: dict) -> str:
    overall = metrics["overall"]
    rows = []
    for model in ("base", "adapted"):
        entry = overall[model]
        prefix = f"overall.{model}"
        rows.append(f"<tr><td class='text'>{model}</td>{_metric(f'{prefix}.users', entry['users'])}"
                    f"{_metric(f'{prefix}.ndcg@10', entry['ndcg@10'])}"
                    f"{_interval(f'{prefix}.ndcg@10_ci95', entry.get('ndcg@10_ci95'))}"
                    f"{_metric(f'{prefix}.hr@10', entry['hr@10'])}"
                    f"{_interval(f'{prefix}.hr@10_ci95', entry.get('hr@10_ci95'))}</tr>")
    paired = overall.get("paired_ndcg@10", {})
    diff = ""
    if paired:
        diff = (f"<p>Adapted minus base NDCG@10, paired over the same users: "
                f"<span data-key='overall.paired_ndcg@10.mean_diff' data-value='{paired['mean_diff']!r}'>"
                f"{paired['mean_diff']:+.4f}</span>, 95% bootstrap interval "
                f"[{paired['low']:+.4f}, {paired['high']:+.4f}].</p>")
    table = _table(["model", "users", "NDCG@10", "95% interval", "HR@10", "95% interval"], rows, "table-overall")
    return f"<h2>Test metrics</h2><p class='muted'>{escape(metrics.get('protocol', ''))}</p>{table}{diff}"


def _segment_section(metrics: dict) -> str:
    names = sorted(metrics["segments"])
    segments = [metrics["segments"][name] for name in names]
    series = []
    for model in ("base", "adapted"):
        values = [s[model]["ndcg@10"] for s in segments]
        bounds = [s[model].get("ndcg@10_ci95") or [v, v] for s, v in zip(segments, values)]
        series.append(Series(model, values, [b[0] for b in bounds], [b[1] for b in bounds]))
    chart = interval_bar_chart("chart-segment-ndcg", "NDCG@10 per segment, with 95% bootstrap intervals", names,
                               series, "NDCG@10 on test targets")
    rows = []
    for name, entry in zip(names, segments):
        prefix = f"segments.{name}"
        paired = entry.get("paired_ndcg@10", {})
        rows.append(f"<tr><td class='text'>{escape(name)}</td>{_metric(f'{prefix}.base.users', entry['base']['users'])}"
                    f"{_metric(f'{prefix}.base.ndcg@10', entry['base']['ndcg@10'])}"
                    f"{_metric(f'{prefix}.adapted.ndcg@10', entry['adapted']['ndcg@10'])}"
                    f"{_metric(f'{prefix}.paired_ndcg@10.mean_diff', paired.get('mean_diff'))}"
                    f"{_interval(f'{prefix}.adapted.ndcg@10_ci95', entry['adapted'].get('ndcg@10_ci95'))}</tr>")
    table = _table(["segment", "users", "base NDCG@10", "adapted NDCG@10", "difference", "adapted 95% interval"],
                   rows, "table-segments")
    return f"<h2>Segments: base versus adapters</h2>{chart}{table}"


def _training_section(inputs: ReportInputs) -> str:
    history = inputs.base.get("history", [])
    if not history:
        return "<h2>Training</h2><p class='muted'>No base model history in models/base/model.json.</p>"
    epochs = [h["epoch"] for h in history]
    loss = line_chart("chart-train-loss", "Base model training loss", epochs,
                      [Series("loss", [h.get("loss") for h in history])], "epoch", "loss")
    ndcg = line_chart("chart-valid-ndcg", "Base model validation NDCG@10", epochs,
                      [Series("valid NDCG@10", [h.get("valid_ndcg@10") for h in history])], "epoch", "NDCG@10")
    seconds = sum(h.get("seconds") or 0.0 for h in history)
    return (f"<h2>Training</h2><div class='charts'>{loss}{ndcg}</div>"
            f"<p class='muted'>{len(history) - 1} epochs in {seconds:.1f} s; epoch 0 is the untrained model.</p>")


def _cost_section(inputs: ReportInputs) -> str:
    metrics = inputs.metrics
    rows = [f"<tr><td class='text'>base model</td><td>-</td><td>-</td>"
            f"{_metric('base_parameters', metrics.get('base_parameters'))}"
            f"<td>{sum(h.get('seconds') or 0.0 for h in inputs.base.get('history', [])):.1f}</td>"
            f"<td>{inputs.base.get('weights_bytes', '-')}</td><td class='text'></td></tr>"]
    for record in inputs.adapters:
        segment = record.get("segment", "")
        trainable = metrics.get("adapters", {}).get(segment, {}).get("trainable_parameters")
        rows.append(f"<tr><td class='text'>{escape(segment)}</td><td>{record.get('users', '-')}</td>"
                    f"<td>{record.get('rank', '-')}</td>"
                    f"{_metric(f'adapters.{segment}.trainable_parameters', trainable)}"
                    f"<td>{record.get('train_seconds') or 0.0:.1f}</td><td>{record.get('weights_bytes', 0)}</td>"
                    f"<td class='text'>{'kept' if record.get('kept') else escape(record.get('reason', ''))}</td></tr>")
    table = _table(["model", "users", "rank", "trainable parameters", "training seconds", "bytes on disk",
                    "adapter"], rows, "table-costs")
    return f"<h2>Parameters, training time and size</h2>{table}"


def _data_section(inputs: ReportInputs) -> str:
    if not inputs.store:
        return ""
    rows = [f"<tr><td class='text'>{escape(key)}</td><td>{value:.5f}</td></tr>" if isinstance(value, float) else
            f"<tr><td class='text'>{escape(key)}</td><td>{escape(str(value))}</td></tr>"
            for key, value in inputs.store.items()]
    rows.append(f"<tr><td class='text'>catalogue items ranked</td>"
                f"{_metric('catalogue_items', inputs.metrics.get('catalogue_items'))}</tr>")
    return f"<h2>Data set</h2>{_table(['statistic', 'value'], rows, 'table-data')}"


def _sample(user: SampleUser) -> str:
    history = "".join(f"<li>{escape(event['title'] or event['item_id'])} "
                      f"<span class='muted'>{escape(event['time'])}</span></li>"
                      for event in user.history) or "<li class='muted'>no earlier events</li>"
    recs = "".join(f"<li class='{'hit' if r['is_held_out'] else ''}'>{escape(r['title'] or r['item_id'])} "
                   f"<span class='muted'>{r['score']:.3f}</span></li>" for r in user.recommendations)
    held_out = escape(user.held_out["title"] or user.held_out["item_id"]) if user.held_out else "-"
    return (f"<div class='sample'><h3>user {escape(user.user_id)} <span class='muted'>segment "
            f"{escape(user.segment)}</span></h3><p>Held-out test item: {held_out}</p>"
            f"<div class='charts'><div><b>Recent history</b>, newest first<ol>{history}</ol></div>"
            f"<div><b>Recommendations</b><ol>{recs}</ol></div></div></div>")


def render(inputs: ReportInputs) -> str:
    """Return the report page as one HTML string."""
    metrics = inputs.metrics
    samples = "".join(_sample(user) for user in inputs.samples)
    sample_section = (f"<h2>Sample users</h2><p class='muted'>Lists were scored as of the moment before each "
                      f"user's held-out test event; a recommended held-out item is in bold.</p>{samples}"
                      if samples else "")
    config = json.dumps(inputs.config, indent=2, sort_keys=True) if inputs.config else "{}"
    title = f"recsys-peft report: {metrics.get('model', '')} seed {metrics.get('seed', '')}"
    return "\n".join([
        "<!DOCTYPE html>", "<html lang='en'><head><meta charset='utf-8'>", f"<title>{escape(title)}</title>",
        f"<style>{STYLE}</style></head><body>", f"<h1>{escape(title)}</h1>",
        f"<p class='muted'>Work folder {escape(str(inputs.work_dir))}. Top-{metrics.get('k', 10)} lists over "
        f"{metrics.get('catalogue_items', '?')} items.</p>",
        _metrics_section(metrics), _segment_section(metrics), _training_section(inputs), _cost_section(inputs),
        _data_section(inputs), sample_section,
        f"<h2>Resolved config</h2><details><summary>config.json</summary><pre>{escape(config)}</pre></details>",
        "</body></html>",
    ])
