import pytest

from smartcache.catalog import SmartcacheError, format_size, parse_size


@pytest.mark.parametrize("text,expected", [
    ("500TB", 500 * 10**12), ("500 TB", 500 * 10**12), ("1.5TiB", int(1.5 * 2**40)), ("10GB", 10**10),
    ("10gb", 10**10), ("123", 123), ("2PB", 2 * 10**15), ("4 KiB", 4096), ("0.5t", 5 * 10**11), (".5GB", 5 * 10**8),
    ("7B", 7), (42, 42),
])
def test_parse(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("bad", ["", "TB", "10XB", "-5GB", "1.2.3TB", "ten GB", -1])
def test_parse_rejects(bad):
    with pytest.raises(SmartcacheError):
        parse_size(bad)


@pytest.mark.parametrize("n,text", [
    (500 * 10**12, "500 TB"), (1_500_000_000, "1.5 GB"), (999, "999 B"), (0, "0 B"), (1234567, "1.235 MB"),
    (2 * 10**15, "2 PB"),
])
def test_format(n, text):
    assert format_size(n) == text


@pytest.mark.parametrize("n", [1, 999, 10**3, 123_456_789, 500 * 10**12, 7 * 10**15])
def test_round_trip_is_close(n):
    assert abs(parse_size(format_size(n)) - n) <= n * 5e-4
