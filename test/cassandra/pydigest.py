"""Reads Cassandra tables with the DataStax Python driver (from PyPI) at
consistency ALL and prints one JSON object: per table, per query, the
row count and a SHA-256 of the sorted rows. The crayfish Cassandra suite
compares what it prints before a backup and after each restore, so the
data is checked by a client crayfish did not write (besides gocql).

    pydigest.py --hosts 127.0.4.11,127.0.4.12 [--user U --password P]
                [--ca CA.pem] TABLE... [--query NAME=CQL]... [--nonnull NAME=CQL]...

--query digests a query's rows; --nonnull counts the rows whose last
column is not null (TTLs: their values change, their presence must not).
"""
import argparse
import hashlib
import json
import ssl
import sys

from cassandra import ConsistencyLevel
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import Cluster, ExecutionProfile, EXEC_PROFILE_DEFAULT
from cassandra.policies import RoundRobinPolicy
from cassandra.query import SimpleStatement


def rows_digest(session, cql):
    stmt = SimpleStatement(cql, fetch_size=500)
    rows = sorted(repr(sorted(r._asdict().items())) for r in session.execute(stmt))
    h = hashlib.sha256()
    for r in rows:
        h.update(r.encode())
        h.update(b"\n")
    return "%d rows %s" % (len(rows), h.hexdigest())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hosts", required=True)
    ap.add_argument("--user")
    ap.add_argument("--password")
    ap.add_argument("--ca")
    ap.add_argument("--query", action="append", default=[])
    ap.add_argument("--nonnull", action="append", default=[])
    ap.add_argument("tables", nargs="*")
    a = ap.parse_args()
    profile = ExecutionProfile(load_balancing_policy=RoundRobinPolicy(),
                               consistency_level=ConsistencyLevel.ALL, request_timeout=60)
    kw = {}
    if a.user:
        kw["auth_provider"] = PlainTextAuthProvider(a.user, a.password)
    if a.ca:
        ctx = ssl.create_default_context(cafile=a.ca)
        ctx.check_hostname = False
        kw["ssl_context"] = ctx
    cluster = Cluster(a.hosts.split(","), execution_profiles={EXEC_PROFILE_DEFAULT: profile}, **kw)
    session = cluster.connect()
    out = {}
    for t in a.tables:
        out[t] = rows_digest(session, "SELECT * FROM " + t)
    for q in a.query:
        name, cql = q.split("=", 1)
        out[name] = rows_digest(session, cql)
    for q in a.nonnull:
        name, cql = q.split("=", 1)
        n = sum(1 for r in session.execute(SimpleStatement(cql, fetch_size=500)) if r[-1] is not None)
        out[name] = "%d rows" % n
    cluster.shutdown()
    json.dump(out, sys.stdout, sort_keys=True)


if __name__ == "__main__":
    main()
