#!/usr/bin/env python3
"""Rebuilds the seed corpora in fuzz/corpus/ from the shared CoinDCX fixtures.

usage: python3 fuzz/make_seeds.py [FIXTURES_DIR]   (default /work/shared/coindcx/fixtures)
normalize seeds are "<event>\\n<argument JSON>": one per event fixture, per REST fixture (given
as the `data` array of the matching event) and per malformed.json entry.
"""
import json
import os
import sys

here = os.path.dirname(os.path.abspath(__file__))
fixtures = sys.argv[1] if len(sys.argv) > 1 else "/work/shared/coindcx/fixtures"
norm = os.path.join(here, "corpus", "normalize")
frame = os.path.join(here, "corpus", "client_frame")
os.makedirs(norm, exist_ok=True)
os.makedirs(frame, exist_ok=True)


def write(directory, name, data):
    with open(os.path.join(directory, name), "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)


def read(name):
    with open(os.path.join(fixtures, name), encoding="utf-8") as f:
        return f.read().strip()


# Event fixtures: the argument text exactly as stored (numbers keep their notation).
for name in ["order-update-filled", "order-update-batch", "order-update-cancelled",
             "order-update-exponent", "position-update", "balance-update"]:
    text = read(name + ".json")
    event = json.loads(text)["event"]
    write(norm, "fixture-" + name, event + "\n" + text)

# REST fixtures: the body spliced in unparsed as `data` (normalize accepts an array there).
for name, event in [("rest-create-response", "df-order-update"),
                    ("rest-orders-list", "df-order-update"),
                    ("rest-positions", "df-position-update"),
                    ("rest-wallets", "balance-update"),
                    ("rest-cancel-response", "df-order-update"),
                    ("rest-error-422", "df-order-update")]:
    write(norm, "fixture-" + name, event + '\n{"data":' + read(name + ".json") + "}")


# malformed.json: every number sits inside a `data` string, so re-serializing is exact.
def no_floats(v):
    if isinstance(v, float):
        raise SystemExit("float outside a string in malformed.json; would lose digits")
    for x in (v.values() if isinstance(v, dict) else v if isinstance(v, list) else []):
        no_floats(x)


for entry in json.loads(read("malformed.json")):
    no_floats(entry["arg"])
    arg = json.dumps(entry["arg"], separators=(",", ":"), ensure_ascii=False)
    write(norm, "malformed-" + entry["name"], entry["event"] + "\n" + arg)

for name, text in [("ping", "ping"), ("ping-padded", "  ping\n"), ("ping-json", '{"type":"ping"}'),
                   ("ping-json-extra", '{"type":"ping","id":1,"data":{}}'),
                   ("type-number", '{"type":1}'), ("subscribe", '{"type":"subscribe","since":42}'),
                   ("socketio-ping", '42["ping",{"data":"Ping message"}]'),
                   ("garbage", "\u00ff\u0000{[\"ping"), ("nested", "[" * 200 + "]" * 200),
                   ("empty", "")]:
    write(frame, name, text)
