#!/usr/bin/env python3
"""Write the hand-built seed corpora (unit-test vectors) and the wal2json seeds, into fuzz/corpus/<target>/.

Seeds from real server bytes come from the capture tool (src/bin/capture.rs, see FUZZING.md), which also
writes fuzz/captures/*.bin; this script derives nothing from a live server.
Usage: python3 fuzz/make_seeds.py  (from the repository root or fuzz/)
"""
import base64, os, struct, sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CORPUS = os.path.join(HERE, "corpus")


def put(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def frame(tag, body):
    return tag + struct.pack(">I", len(body) + 4) + body


def auth(code, data=b""):
    return frame(b"R", struct.pack(">i", code) + data)


# ---- backend_framing: the unit-test messages, whole and split ----
msgs = [
    auth(0), auth(3), auth(5, b"\x01\x02\x03\x04"),
    auth(10, b"SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0"), auth(11, b"r=abc"), auth(12, b"v=xyz"),
    frame(b"S", b"server_version\x0015.4\0"), frame(b"K", b"\0\0\0\x2a\x09\x09\x09\x09"), frame(b"Z", b"I"),
    frame(b"v", b"\0\0\0\0\0\0\0\x01_pq_.x\0"),
    frame(b"T", b"\0\x01lsn\0" + b"\0" * 6 + b"\0\0\0\x19\xff\xff\xff\xff\xff\xff\0\0"),
    frame(b"D", b"\0\x02\0\0\0\x02ab\xff\xff\xff\xff"), frame(b"C", b"SELECT 1\0"), frame(b"I", b""),
    frame(b"W", b"\0\0\0"), frame(b"H", b"\0\0\x01\0\0"), frame(b"d", b"hello"), frame(b"c", b""),
    frame(b"E", b"SERROR\0VERROR\0C28P01\0Mpassword authentication failed\0Dd\0Hh\0Xignored\0\0"),
    frame(b"N", b"SWARNUNG\0VWARNING\0C01000\0Mcareful\0\0"),
    frame(b"A", b"\0\0\0\x07chan\0payload\0"),
]
stream = b"".join(msgs)
put("backend_framing", "unit-whole", b"\x00" + stream)
put("backend_framing", "unit-bytewise", b"\x01\x00" + stream)
put("backend_framing", "unit-split", b"\x04\x02\x04\x06\x10" + stream)
put("backend_framing", "old-server-error", b"\x00EFATAL: unsupported frontend protocol\n\0")
put("backend_framing", "huge-length", b"\x80d\xff\xff\xff\xff")

# ---- copydata ----
put("copydata", "xlogdata", b"w" + struct.pack(">QQq", 0x100000010, 0x100000020, 7) + b"{}")
put("copydata", "keepalive", b"k" + struct.pack(">Qq", 5, 9) + b"\x01")
put("copydata", "status", b"r" + struct.pack(">QQQq", 1, 2, 3, 4) + b"\x00")
put("copydata", "w2j-begin", b"w" + struct.pack(">QQq", 1, 2, 3) + b'{"action":"B","xid":1}')
put("copydata", "w2j-chunk-header", b"w" + struct.pack(">QQq", 0, 2, 3) + b'{"xid":1,"change":[')

# ---- replication_stream: hand-built session with every boundary, keepalives asking for replies ----
def xlog(start, end, payload):
    return frame(b"d", b"w" + struct.pack(">QQq", start, end, 0) + payload)


def keep(end, reply):
    return frame(b"d", b"k" + struct.pack(">Qq", end, 0) + bytes([reply]))


s = frame(b"W", b"\0\0\0")
s += xlog(100, 100, b'{"action":"B","xid":1}') + xlog(110, 110, b'{"action":"I","table":"t"}')
s += xlog(120, 120, b'{"action":"C","xid":1}') + keep(200, 1) + keep(300, 0)
s += xlog(0, 310, b'{"xid":2,"change":[') + xlog(0, 320, b'{"kind":"insert"}') + xlog(330, 330, b"]}") + keep(400, 1)
ctl = bytes([0x0d, 0x6d, 0x0d, 0x9d, 0xcd, 0xad, 0xbd, 0xe0])
for flags in (0x09, 0x0b, 0x0f, 0x08):
    put("replication_stream", "hand-%02x" % flags, bytes([flags]) + struct.pack(">QQ", 50, 250) + bytes([len(ctl)]) + ctl + s)

# ---- startup_auth: scripted exchanges (op codes: see the target) ----
put("startup_auth", "scram-ok", bytes([0x00, 2, 0x02, 3, 5]) + b"abcde" + bytes([4, 1, 2, 3, 4, 3, 4, 7, 10, 0, 10, 1, 10, 2]))
put("startup_auth", "scram-plus-tls", bytes([0x30, 2, 0x03, 3, 3]) + b"xyz" + bytes([2, 9, 9, 1, 4, 7, 10, 2]))
put("startup_auth", "scram-require-cb", bytes([0x50, 2, 0x03, 3, 1, 7, 1, 0, 2, 4, 7, 10, 2]))
put("startup_auth", "scram-bad-final", bytes([0x00, 2, 0x02, 3, 1, 7, 1, 0, 2, 6, 5, 1, 7, 10, 2]))
put("startup_auth", "scram-ok-early", bytes([0x00, 2, 0x02, 3, 1, 7, 1, 0, 2, 7, 10, 2]))
put("startup_auth", "md5", bytes([0x00, 9, 1, 2, 3, 4, 7, 10, 0, 10, 2]))
put("startup_auth", "cleartext-require-scram", bytes([0x01, 8, 7, 10, 2]))
put("startup_auth", "trust", bytes([0x00, 7, 10, 0, 10, 1, 10, 3, 10, 2]))
put("startup_auth", "trust-require-scram", bytes([0x01, 7, 10, 2]))
put("startup_auth", "error", bytes([0x00, 11, 3]))

# ---- scram: honest exchanges for each channel binding, and RFC 7677 messages (refused: other nonce) ----
for cb in range(3):
    put("scram", "honest-%d" % cb, bytes([0x0c | cb, 0, 0, 0, 4]) + b"srvn" + bytes([16]) + b"W22ZaJ0SNY7soEsU" + bytes([3]))
    put("scram", "honest-corrupt-%d" % cb, bytes([0x0c | cb, 17, 0x20, 0, 1, 0x41, 2, 1, 2, 1]))
rfc_first = b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
rfc_final = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
put("scram", "rfc7677", bytes([0, 0, 0, 0, len(rfc_first)]) + rfc_first + rfc_final)
put("scram", "server-error", bytes([0x04, 0, 0, 0, 1, 0x41, 1, 0x42, 1]) + b"e=invalid-proof")
put("scram", "fuzzed-password", bytes([0x1c, 0, 0, 8]) + "pässwörd".encode()[:8] + bytes([1, 0x41, 1, 0x42, 1]))

# ---- conninfo ----
for i, c in enumerate([
    "host=localhost port=5432 dbname=mydb user=alice password=secret",
    "host=db1,db2 port=5433,5434 dbname='my db' user=bob application_name='it\\'s' sslmode=require",
    "postgresql://user:p%40ss@[::1]:5432,host2:5433/db?sslmode=verify-full&application_name=x&connect_timeout=10",
    "postgres:///db?host=/var/run/postgresql&replication=database",
    "dbname=postgresql://u@h/d?options=-c%20x%3D1 user=z",
    "host=/tmp port=5432 require_auth=!md5,!password channel_binding=require target_session_attrs=read-write",
    "keepalives=1 keepalives_idle=30 keepalives_interval=5 keepalives_count=3 tcp_user_timeout=100 options='-c a=b'",
    "postgresql://%E2%82%AC@host/%F0%9F%90%98",
    "hostaddr=127.0.0.1 host=example.com sslrootcert=system sslnegotiation=direct",
]):
    put("conninfo", "c%d" % i, c.encode())

# ---- pgpass ----
for i, p in enumerate([
    b"localhost:5432:db:user:pw\n*:*:*:*:fallback\n\xfflocalhost\xff5432\xffdb\xffuser",
    b"#comment\nh\\:x:*:db:u:p\\:w\\\\d:extra\r\n\xffh:x\xff1\xffdb\xffu",
    b"a:1:b:c\n*:*:*:*\n*:*:*:*:\xffa\xff1\xffb\xffc",
    b"host:*:*:us\\er:pass\\\n\xffhost\xff5432\xffdb\xffuser",
]):
    put("pgpass", "p%d" % i, p)

# ---- lsn ----
for i, l in enumerate([b"0/0", b"16/B374D848", b"FFFFFFFF/FFFFFFFF", b"123456789/0", b" 0/0", b"0/0/0", b"a/b"]):
    put("lsn", "l%d" % i, l)

# ---- commands ----
put("commands", "c0", b"slot\xffformat-version\xff2\xffinclude-xids\xff\xfe")
put("commands", "c1", b'My "Slot"\xffx\'\xffit\'s \\ "q"\xfff\xff\xfe')

# ---- wal2json: payloads from tests/data/wal2json/*.w2j ----
def w2j(path):
    with open(path, "rb") as f:
        data = f.read()
    i = data.index(b"\n") + 1
    out = []
    while i < len(data):
        j = data.index(b"\n", i)
        n = int(data[i + 1:j].split(b" ")[0])
        out.append(data[j + 1:j + 1 + n])
        i = j + 1 + n + 1
    return out


wdir = os.path.join(ROOT, "tests", "data", "wal2json")
if os.path.isdir(wdir):
    for fn in sorted(os.listdir(wdir)):
        if not fn.endswith(".w2j"):
            continue
        pays = w2j(os.path.join(wdir, fn))
        base = fn[:-4]
        seen = set()
        picked = [p for p in pays if len(p) <= 4096 and not (p[:40] in seen or seen.add(p[:40]))][:25]
        if base.startswith("v2"):
            for k, p in enumerate(picked):
                put("wal2json_v2", "%s-%d" % (base, k), p)
                put("wal2json_differential", "%s-%d" % (base, k), p)
        elif "chunks" in base:
            seq = b"\0".join(p for p in pays[:60] if len(p) <= 2048)
            put("wal2json_chunks", base, seq[:16384])
            for k, p in enumerate(picked[:8]):
                put("wal2json_chunks", "%s-%d" % (base, k), p)
        else:
            for k, p in enumerate(picked):
                put("wal2json_v1", "%s-%d" % (base, k), p)

# ---- json_writer: one of each kind ----
for k in range(7):
    put("json_writer", "kind%d" % k, bytes([k, 1]) + struct.pack(">Q", 42) + bytes([1]) + struct.pack(">Q", 0x1500000)
        + bytes([1, 5]) + b"2024-" + bytes([0, 1, 2, 3, 4]) + b"\x05public\x02t\"" + bytes([2, 3, 1]) + b"1.5" + b"\x00\x02\xff\xfe")
print("seeds written to", CORPUS)
