#!/usr/bin/env python3
"""Independent implementation of pairgate spool format v1 (needs `cryptography`).

    python3 kat.py check      # re-derive every vector from its inputs, compare, decrypt
    python3 kat.py generate   # (re)write the .meta.json/.spool files from vectors.json
"""
import hashlib, json, struct, sys
from pathlib import Path
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

HERE = Path(__file__).resolve().parent
CHUNK = 65536


def plaintext(case):
    if "plaintext_hex" in case:
        return bytes.fromhex(case["plaintext_hex"])
    return bytes(i % 251 for i in range(case["plaintext_pattern_len"]))  # byte i = i mod 251


def seal(master, salt, prefix, meta, data):
    key_id = hashlib.sha256(master).digest()[:8]
    header = b"PGSPOOL1" + key_id + salt + prefix
    assert len(header) == 55
    file_key = HKDF(hashes.SHA256(), 32, salt, b"pairgate spool v1").derive(master)
    aead = AESGCM(file_key)
    chunks = [data[i:i + CHUNK] for i in range(0, len(data), CHUNK)] or [b""]
    records = [meta] + chunks
    out = bytearray(header)
    for i, pt in enumerate(records):
        last = i == len(records) - 1
        nonce = prefix + struct.pack(">I", i) + bytes([1 if last else 0])
        ct = aead.encrypt(nonce, pt, header)  # ciphertext || 16-byte tag
        out += struct.pack(">I", len(ct)) + ct
    return bytes(out)


def open_(master, blob):
    header, pos = blob[:55], 55
    salt, prefix = header[16:48], header[48:55]
    assert header[:8] == b"PGSPOOL1" and header[8:16] == hashlib.sha256(master).digest()[:8]
    aead = AESGCM(HKDF(hashes.SHA256(), 32, salt, b"pairgate spool v1").derive(master))
    plain, i = [], 0
    while pos < len(blob):
        (n,) = struct.unpack(">I", blob[pos:pos + 4])
        ct, pos = blob[pos + 4:pos + 4 + n], pos + 4 + n
        last = pos == len(blob)
        plain.append(aead.decrypt(prefix + struct.pack(">I", i) + bytes([last]), ct, header))
        i += 1
    return json.loads(plain[0]), b"".join(plain[1:])


def main(mode):
    vectors = json.loads((HERE / "vectors.json").read_text())
    master = bytes.fromhex(vectors["master_key"])
    for case in vectors["cases"]:
        data = plaintext(case)
        meta = (HERE / case["metadata_file"]).read_bytes()
        blob = seal(master, bytes.fromhex(case["salt"]), bytes.fromhex(case["nonce_prefix"]), meta, data)
        if mode == "generate":
            (HERE / case["spool_file"]).write_bytes(blob)
            print(case["name"], len(blob), hashlib.sha256(blob).hexdigest())
            continue
        expected = (HERE / case["spool_file"]).read_bytes()
        assert blob == expected, f"{case['name']}: spool bytes differ"
        assert hashlib.sha256(expected).hexdigest() == case["spool_sha256"], case["name"]
        m, out = open_(master, expected)
        assert out == data and m["size"] == len(data), case["name"]
        assert m["sha256"] == hashlib.sha256(data).hexdigest(), case["name"]
        print(f"ok {case['name']}: {len(expected)} bytes")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "check")
