"""Compiled (numba) kernels of the column-wise Avro block decoder.

``decode_blocks`` walks the records of many decompressed blocks in one call and scatters every
projected field into flat column buffers; fields that are not wanted are parsed and checked but not
stored. A block that does not decode is flagged in ``status`` and the others go on. The checks are
those of fastavro's reader, so that the same blocks survive: a varint or value that runs past the
block, a union index out of range (Python's negative indexing included), a negative length, or a
string that is not strict UTF-8 make the block fail; bytes left over after the block's records, or a
boolean byte other than 0/1, do not.

Field programs: ``branches[f, :]`` are the type codes of field ``f``'s union branches (``nbr[f]`` of
them; ``nbr[f] == 0`` means a plain, non-union type in ``branches[f, 0]``); ``slot[f]`` is where a
wanted field's values go in the array of its kind, ``out[f]`` its row in ``valid`` (-1: not wanted),
``vcode[f]`` the type of its values.
"""

from __future__ import annotations

import numpy as np

try:  # numba is a declared dependency; without it the kernels still run, only far slower
    from numba import njit
except ImportError:  # pragma: no cover - exercised only where numba is missing
    def njit(*args, **kwargs):
        if args and callable(args[0]):
            return args[0]
        return lambda f: f

NULL, BOOLEAN, INT, LONG, FLOAT, DOUBLE, BYTES, STRING = range(8)
CODES = {"null": NULL, "boolean": BOOLEAN, "int": INT, "long": LONG, "float": FLOAT, "double": DOUBLE,
         "bytes": BYTES, "string": STRING}
OK, FAILED, IMPLAUSIBLE = 0, 1, 2          # block status


@njit(cache=True, nogil=True, inline="always")
def _varint(buf, p, end):
    """(value, new position); position -1 when the varint runs past ``end`` (fastavro: IndexError)."""
    n = np.uint64(0)
    shift = np.uint64(0)
    while True:
        if p >= end:
            return np.int64(0), -1
        b = np.uint64(buf[p])
        p += 1
        # like the C shift fastavro compiles to on x86-64: the count wraps at 64, no error
        n |= (b & np.uint64(0x7F)) << (shift & np.uint64(63))
        if not b & np.uint64(0x80):
            break
        shift += np.uint64(7)
    z = (n >> np.uint64(1)) ^ (np.uint64(0) - (n & np.uint64(1)))
    return np.int64(z), p


@njit(cache=True, nogil=True)
def _utf8_ok(buf, p, end):
    """Strict UTF-8 (as Python's decoder): no overlong forms, no surrogates, nothing above U+10FFFF."""
    while p < end:
        c = buf[p]
        if c < 0x80:
            p += 1
            continue
        if 0xC2 <= c <= 0xDF:
            need, lo, hi = 1, 0x80, 0xBF
        elif c == 0xE0:
            need, lo, hi = 2, 0xA0, 0xBF
        elif 0xE1 <= c <= 0xEC or 0xEE <= c <= 0xEF:
            need, lo, hi = 2, 0x80, 0xBF
        elif c == 0xED:
            need, lo, hi = 2, 0x80, 0x9F
        elif c == 0xF0:
            need, lo, hi = 3, 0x90, 0xBF
        elif 0xF1 <= c <= 0xF3:
            need, lo, hi = 3, 0x80, 0xBF
        elif c == 0xF4:
            need, lo, hi = 3, 0x80, 0x8F
        else:
            return False
        if p + need >= end:
            return False
        c1 = buf[p + 1]
        if c1 < lo or c1 > hi:
            return False
        for k in range(2, need + 1):
            ck = buf[p + k]
            if ck < 0x80 or ck > 0xBF:
                return False
        p += need + 1
    return True


@njit(cache=True, nogil=True)
def _decode_block(buf, p, end, row, count, branches, nbr, slot, out, vcode,
                  ints, fbytes, bools, soff, sdata, used, valid):
    """Decode ``count`` records from ``buf[p:end]`` into rows ``row..``; False if the block fails.

    String bytes are copied while they are validated (still in cache): into ``sdata[s, used[s]:]``,
    with ``soff[s, row + 1]`` the end offset of row ``row``'s value.
    """
    nf = nbr.shape[0]
    for r in range(count):
        for f in range(nf):
            nb = nbr[f]
            if nb == 0:
                code = branches[f, 0]
            else:
                idx, p = _varint(buf, p, end)
                if p < 0 or idx >= nb or idx < -nb:
                    return False
                if idx < 0:
                    idx += nb
                code = branches[f, idx]
            o = out[f]
            s = slot[f]
            if code == NULL:
                if o >= 0:              # zero value under a null: outputs stay deterministic
                    valid[o, row] = 0
                    vc = vcode[f]
                    if vc == BOOLEAN:
                        bools[s, row] = 0
                    elif vc == INT or vc == LONG:
                        ints[s, row] = 0
                    elif vc == FLOAT or vc == DOUBLE:
                        fbytes[s, row, :] = 0
                    elif vc == BYTES or vc == STRING:
                        soff[s, row + 1] = used[s]
                continue
            if code == BOOLEAN:
                if p >= end:
                    return False
                if o >= 0:
                    bools[s, row] = 1 if buf[p] != 0 else 0
                p += 1
            elif code == INT or code == LONG:
                v, p = _varint(buf, p, end)
                if p < 0:
                    return False
                if o >= 0:
                    ints[s, row] = v
            elif code == FLOAT or code == DOUBLE:
                w = 4 if code == FLOAT else 8
                if p + w > end:
                    return False
                if o >= 0:
                    for j in range(w):
                        fbytes[s, row, j] = buf[p + j]
                p += w
            else:                                   # BYTES or STRING
                n, p = _varint(buf, p, end)
                if p < 0 or n < 0 or n > end - p:
                    return False
                acc = 0
                if o >= 0:                          # copy while the bytes are in cache
                    u = used[s]
                    for i in range(n):
                        c = buf[p + i]
                        sdata[s, u + i] = c
                        acc |= c
                    used[s] = u + n
                    soff[s, row + 1] = u + n
                elif code == STRING:
                    for i in range(p, p + n):
                        acc |= buf[i]
                # plain ASCII (nearly every value) needs no more; else strict UTF-8 as fastavro decodes
                if code == STRING and acc >= 0x80 and not _utf8_ok(buf, p, p + n):
                    return False
                p += n
            if o >= 0:
                valid[o, row] = 1
        row += 1
    return True


@njit(cache=True, nogil=True)
def decode_blocks(buf, starts, ends, counts, branches, nbr, slot, out, vcode,
                  ints, fbytes, bools, soff, sdata, valid, status):
    """Decode every block ``b`` (``buf[starts[b]:ends[b]]``, ``counts[b]`` records) unless
    ``status[b]`` already says it is implausible; a failing block sets ``status[b]`` and its rows
    are taken back, so the rows of the good blocks are contiguous. Returns their number."""
    used = np.zeros(soff.shape[0], dtype=np.int64)
    saved = np.zeros(soff.shape[0], dtype=np.int64)
    soff[:, 0] = 0
    row = 0
    for b in range(starts.shape[0]):
        if status[b] != OK:
            continue
        saved[:] = used
        if _decode_block(buf, starts[b], ends[b], row, counts[b], branches, nbr, slot, out, vcode,
                         ints, fbytes, bools, soff, sdata, used, valid):
            row += counts[b]
        else:
            status[b] = FAILED
            used[:] = saved
    return row
