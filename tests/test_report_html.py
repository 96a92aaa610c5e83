"""The report page's charts keep inside their box: long input names and the share text fit
the coverage chart, and the throttle's rate is drawn on the throughput plot."""

from __future__ import annotations

import re

from prewarm.report import html
from prewarm.report.model import CoverageRow

MiB = 1 << 20


def _texts(svg: str) -> list[tuple[float, str, str]]:
    """(x, anchor, shown text) of each <text>, the hover <title> left out."""
    out = []
    for m in re.finditer(r'<text x="([\d.]+)"[^>]*?(?: text-anchor="(\w+)")?>(?:<title>.*?</title>)?(.*?)</text>', svg):
        out.append((float(m.group(1)), m.group(2) or "start", m.group(3)))
    return out


def test_coverage_labels_and_shares_fit_the_chart_whatever_the_names() -> None:
    long = "/studio/proj/" + "very_long_directory_name/" * 8 + "shot010_lighting_v003.####.exr"
    rows = [CoverageRow.of(long, 40 * MiB, 40 * MiB, 1200, 400 * MiB),
            CoverageRow.of("/studio/proj/a.tx", 4 * MiB, 0, 1, 4 * MiB)]
    svg = html._coverage(rows)
    texts = _texts(svg)
    assert len(texts) == 4
    for x, anchor, text in texts:
        width = len(text.replace("&amp;", "&")) * html.CHAR_W
        left, right = (x - width, x) if anchor == "end" else (x, x + width)
        assert 0 <= left and right <= html.W, (text, left, right)
    assert texts[0][2].startswith("\u2026") and texts[0][2].endswith("shot010_lighting_v003.####.exr")
    assert f"<title>{long}</title>" in svg  # the whole name on hover
    bars = [float(w) for w in re.findall(r'<rect x="0" y="[\d.]+" width="([\d.]+)"', svg)]
    detail_left = min(x - len(t) * html.CHAR_W for x, a, t in texts if a == "end")
    assert max(bars) <= detail_left  # bars end before the share text begins


def test_the_throttle_is_drawn_on_the_throughput_plot_inside_it() -> None:
    times, rates = [float(i) for i in range(10)], [30e6] * 10
    svg = html._line_chart(times, rates, 1e-6, "MB/s", "#000", "throughput", cap=50e6)
    m = re.search(r'<line class="cap" x1="[\d.]+" x2="[\d.]+" y1="([\d.]+)"', svg)
    assert m and html.PAD_T <= float(m.group(1)) < html.H - html.PAD_B  # above the 30 MB/s line, in the plot
    assert "throttle 50.0 MB/s" in svg
    assert 'class="cap"' not in html._line_chart(times, rates, 1e-6, "MB/s", "#000", "throughput")


def test_an_input_the_frames_read_nothing_of_is_shown_without_an_over_fetch() -> None:
    """`evaluate` gives such an input no over-fetch (None): the page shows `-`, it does not fail."""
    from prewarm.plan.evaluate import Evaluation, InputScore, Score

    e = Evaluation("s", 65536, 2, 2, Score(1.0, 2.0, 65536, 131072, 65536),
                   [InputScore("/studio/proj/a.tx", 1.0, 1.0, 65536, 65536),
                    InputScore("/studio/proj/unread.tx", 0.0, None, 0, 65536)], {}, [], 0)
    page = html._evaluation(e)
    assert '<td class="path">/studio/proj/unread.tx</td><td>0.0%</td><td>-</td>' in page
