"""The region model of shared caches (an Alembic archive: a region per frame, identical samples
stored once): progressions, holds, cycles and regions out of frame order."""

from __future__ import annotations

from prewarm.plan.access import Access
from prewarm.plan.aggregate import aggregate
from prewarm.plan.predict import predict
from prewarm.plan.ranges import covered, normalize
from prewarm.plan.records import FileInfo, Reason

ABC = "/s/anim.abc"
SIZE = 5_000_000
HEADER = (0, 200_000)
INDEX = (SIZE - 3000, SIZE)
STRIDE = 120_000


def region(k: int) -> tuple[int, int]:
    """The k-th distinct sample region of the archive, after the header."""
    return HEADER[1] + k * STRIDE, HEADER[1] + (k + 1) * STRIDE


def traced(regions: dict[int, int]):  # type: ignore[no-untyped-def]
    """Frames reading the header, the index and region `regions[frame]`."""
    return aggregate(Access(ABC, offset=s, length=e - s, frame=f)
                     for f, k in regions.items() for s, e in (HEADER, region(k), INDEX))


def planned(ts, frames):  # type: ignore[no-untyped-def]
    res = predict(frames, [], ts, lambda p: FileInfo(p, SIZE, 0.0) if p == ABC else None)
    per = {f: normalize(s for p in res.predictions if f in p.frames for s in p.spans) for f in frames}
    reasons = {f: {p.reason for p in res.predictions if f in p.frames} for f in frames}
    return per, reasons


def test_steady_progression_is_extrapolated_inside_the_sample_data():
    per, reasons = planned(traced({f: f for f in range(1, 7)}), [7, 12])
    for f in (7, 12):
        s, e = region(f)
        assert covered(per[f], s, e) == e - s
        assert Reason.PROGRESSION in reasons[f] and Reason.REGION not in reasons[f]
        assert sum(b - a for a, b in per[f]) < 3 * STRIDE + HEADER[1] + 3000


def test_a_cycle_repeats_regions_and_unseen_frames_get_the_whole_sample_data():
    # a 4-frame cycle: frame f reads region (f - 1) % 4; traced every 3rd frame
    cycle = {f: (f - 1) % 4 for f in range(1, 25)}
    ts = traced({f: cycle[f] for f in range(1, 25, 3)})
    per, reasons = planned(ts, [2, 3, 20, 24])
    for f in (2, 3, 20, 24):
        s, e = region(cycle[f])
        assert covered(per[f], s, e) == e - s, f"frame {f} misses its region"
    assert Reason.REGION in reasons[20]
    # bounded by what lies between the header and the index around the traced regions
    hi = max(region(k)[1] for k in range(4))
    assert all(e <= max(hi, INDEX[1]) for _, e in per[20])


def test_a_hold_between_two_traced_frames_reads_their_region():
    ts = traced({1: 0, 2: 1, 5: 2, 9: 2, 10: 3})
    per, reasons = planned(ts, [6, 7])
    s, e = region(2)
    assert all(covered(per[f], s, e) == e - s for f in (6, 7))
    assert Reason.REGION not in reasons[6]
    assert covered(per[6], *region(0)) == 0, "a hold does not borrow far regions"


def test_regions_out_of_frame_order_are_not_extrapolated_off_the_file():
    order = {1: 5, 2: 1, 3: 7, 4: 0, 5: 3, 6: 6}
    per, reasons = planned(traced(order), [8])
    assert Reason.PROGRESSION not in reasons[8] and Reason.REGION in reasons[8]
    lo, hi = region(0)[0], region(7)[1]
    assert covered(per[8], lo, hi) == hi - lo
    assert all(e <= SIZE for _, e in per[8])


def test_a_progression_running_off_the_data_falls_back_to_the_sample_span():
    # six distinct regions, then the shot ends: frames far beyond would run into the index
    ts = traced({f: f - 1 for f in range(1, 7)})
    far = 6 + (INDEX[0] - region(5)[1]) // STRIDE + 5
    per, reasons = planned(ts, [far])
    assert Reason.REGION in reasons[far] and Reason.PROGRESSION not in reasons[far]
    assert covered(per[far], region(0)[0], region(5)[1]) == region(5)[1] - region(0)[0]
