"""The DuckDB baseline for verification: the same point query on the same Parquet file.

Usage: duckdb_point.py HOUSEHOLD_PARQUET PROBES_FILE

Each identity number in PROBES_FILE is looked up with a prepared statement on one thread,
reading the items a verification compares (name and household status). The first 200 probes
warm the page cache, as in the gateway's run. Prints one JSON line of latency percentiles.
"""

import json
import sys
import time

import duckdb


def main() -> None:
    parquet, probes_file = sys.argv[1], sys.argv[2]
    probes = [line.strip() for line in open(probes_file, encoding="utf-8") if line.strip()]
    con = duckdb.connect()
    con.execute("SET threads TO 1")
    query = f"SELECT name, status FROM read_parquet('{parquet}') WHERE id_number = $1"
    samples = []
    for probe in probes:
        started = time.perf_counter()
        rows = con.execute(query, [probe]).fetchall()
        samples.append(time.perf_counter() - started)
        assert rows, probe
    warm = sorted(samples[200:])

    def at(q: float) -> float:
        index = min(len(warm) - 1, max(0, int(len(warm) * q + 0.999999) - 1))
        return warm[index] * 1e6

    print(json.dumps({
        "version": duckdb.__version__,
        "p50_us": at(0.50),
        "p90_us": at(0.90),
        "p99_us": at(0.99),
        "max_us": warm[-1] * 1e6,
    }))


if __name__ == "__main__":
    main()
