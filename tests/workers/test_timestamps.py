import datetime as dt

from doodl.workers.timestamps import COMPACT_UTC, READABLE_UTC, human_duration, utc_timestamp


def test_timestamps_are_utc_in_each_format():
    t = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC
    assert utc_timestamp(t) == "2023-11-14T22:13:20Z"
    assert utc_timestamp(t, COMPACT_UTC) == "20231114T221320Z"
    assert utc_timestamp(t, READABLE_UTC) == "2023-11-14 22:13:20"
    aware = dt.datetime.fromtimestamp(t, dt.timezone(dt.timedelta(hours=2)))
    assert utc_timestamp(aware) == "2023-11-14T22:13:20Z"


def test_durations_in_the_unit_a_person_reads():
    assert [human_duration(s) for s in (4.2, 95, 720, 12600)] == ["4.2 s", "95 s", "12 min", "3.5 h"]
