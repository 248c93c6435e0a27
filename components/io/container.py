"""What a video container *declares* about itself, read from its headers without decoding.

A file cut short (a download or copy that stopped early) usually still opens: its header says how
many bytes and frames follow, and the decoder simply runs out. Comparing those declarations with
the file on disk is the cheapest integrity check there is. Two families are parsed here:

- ISO-BMFF (mp4/mov): every top-level box states its size, so a box reaching past the end of the
  file means bytes are missing; the first video track's ``stsz`` sample count is the declared frame
  count (``stts`` when ``stsz`` is absent) and its ``mdhd`` gives the declared duration.
- Matroska/WebM (EBML): the Segment and each of its top-level children (Clusters, Cues, ...) state
  their sizes; ``Info/Duration`` scaled by ``TimestampScale`` is the declared duration, and the first
  video track's ``DefaultDuration`` (when written) gives the frame rate.
- RIFF (AVI): each top-level chunk (``RIFF``, and ``AVIX`` extensions past 1 GB) states its size;
  no frame count is taken from it.

Any other container declares nothing here (all fields ``None``): the decode checks in
:mod:`components.io.video` still apply. A parse never raises on malformed input; what cannot be
read is simply not declared.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

# Largest moov/Info/Tracks payload read into memory (real ones are kilobytes to a few MB).
_MAX_HEADER_BYTES = 64 << 20


@dataclass(frozen=True)
class Declared:
    """A container's own claims: total bytes, video frame count and duration (None = not stated)."""

    container: str | None
    bytes: int | None
    frames: int | None
    seconds: float | None
    fps: float | None = None

    def frames_at(self, fps: float) -> int | None:
        """Declared frame count, or (when only a duration is declared) duration x ``fps`` rounded."""
        if self.frames is not None:
            return self.frames
        if self.seconds is None or fps <= 0:
            return None
        return round(self.seconds * (self.fps or fps))


def declared(path: Path) -> Declared:
    """Parse ``path``'s container header (mp4/mov or Matroska/WebM); see the module docstring."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) >= 8 and head[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip"):
            return _declared_bmff(f, size)
        if head[:4] == b"\x1a\x45\xdf\xa3":
            return _declared_ebml(f, size)
        if head[:4] == b"RIFF":
            return _declared_riff(f, size)
    return Declared(None, None, None, None)


# --- ISO-BMFF -----------------------------------------------------------------------------------


def _boxes(buf: bytes, start: int = 0, end: int | None = None):
    """(type, payload_start, payload_end) of the boxes in ``buf[start:end]``; stops at a bad size."""
    end = len(buf) if end is None else end
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack(">I4s", buf[pos : pos + 8])
        header = 8
        if size == 1:
            if pos + 16 > end:
                return
            (size,) = struct.unpack(">Q", buf[pos + 8 : pos + 16])
            header = 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            return
        yield kind, pos + header, pos + size
        pos += size


def _child(buf: bytes, start: int, end: int, kind: bytes) -> tuple[int, int] | None:
    for k, s, e in _boxes(buf, start, end):
        if k == kind:
            return s, e
    return None


def _path(buf: bytes, start: int, end: int, *kinds: bytes) -> tuple[int, int] | None:
    span: tuple[int, int] | None = (start, end)
    for kind in kinds:
        if span is None:
            return None
        span = _child(buf, span[0], span[1], kind)
    return span


def _video_track(moov: bytes) -> tuple[int | None, float | None]:
    """(sample count, seconds) of the first track whose handler is ``vide``."""
    for kind, s, e in _boxes(moov):
        if kind != b"trak":
            continue
        mdia = _child(moov, s, e, b"mdia")
        if mdia is None:
            continue
        hdlr = _child(moov, *mdia, b"hdlr")
        if hdlr is None or moov[hdlr[0] + 8 : hdlr[0] + 12] != b"vide":
            continue
        seconds = None
        mdhd = _child(moov, *mdia, b"mdhd")
        if mdhd is not None:
            m = moov[mdhd[0] : mdhd[1]]
            if m[:1] == b"\x01" and len(m) >= 32:
                timescale, duration = struct.unpack(">IQ", m[20:32])
            elif len(m) >= 20:
                timescale, duration = struct.unpack(">II", m[12:20])
            else:
                timescale, duration = 0, 0
            if timescale and duration not in (0, 0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF):
                seconds = duration / timescale
        stbl = _path(moov, mdia[0], mdia[1], b"minf", b"stbl")
        count = None
        if stbl is not None:
            for kind_ in (b"stsz", b"stz2"):
                box = _child(moov, *stbl, kind_)
                if box is not None and box[1] - box[0] >= 12:
                    (count,) = struct.unpack(">I", moov[box[0] + 8 : box[0] + 12])
                    break
            if count is None and (stts := _child(moov, *stbl, b"stts")) is not None:
                (n,) = struct.unpack(">I", moov[stts[0] + 4 : stts[0] + 8])
                entries = moov[stts[0] + 8 : min(stts[1], stts[0] + 8 + 8 * n)]
                count = sum(struct.unpack(">I", entries[i : i + 4])[0] for i in range(0, len(entries), 8))
        # a fragmented mp4 (moof boxes) keeps an empty sample table here: it declares no count
        return (count or None), seconds
    return None, None


def _declared_bmff(f, size: int) -> Declared:
    pos, declared_end, moov = 0, 0, None
    while pos < size:
        f.seek(pos)
        hdr = f.read(16)
        if len(hdr) < 8:
            if any(hdr):  # the file ends inside a box header (zero bytes are padding)
                declared_end = max(declared_end, pos + 8)
            break
        box_size, kind = struct.unpack(">I4s", hdr[:8])
        header = 8
        if box_size == 1:
            if len(hdr) < 16:
                declared_end = max(declared_end, pos + 16)
                break
            (box_size,) = struct.unpack(">Q", hdr[8:16])
            header = 16
        elif box_size == 0:  # "extends to the end of the file": declares no size of its own
            box_size = size - pos
        if box_size < header:
            break  # not a box: stop; the decoder reports the damage
        declared_end = max(declared_end, pos + box_size)
        if kind == b"moov" and pos + box_size <= size and box_size <= _MAX_HEADER_BYTES:
            f.seek(pos + header)
            moov = f.read(box_size - header)
        pos += box_size
    frames, seconds = _video_track(moov) if moov is not None else (None, None)
    return Declared("mp4/mov", declared_end or None, frames, seconds)


def _declared_riff(f, size: int) -> Declared:
    pos, declared_end = 0, 0
    while pos < size:
        f.seek(pos)
        hdr = f.read(8)
        if len(hdr) < 8:
            if any(hdr):  # the file ends inside a chunk header (zero bytes are padding)
                declared_end = max(declared_end, pos + 8)
            break
        if hdr[:4] != b"RIFF":
            break  # junk after the last RIFF chunk declares nothing
        (chunk,) = struct.unpack("<I", hdr[4:8])
        end = pos + 8 + chunk + (chunk & 1)
        declared_end = max(declared_end, end)
        pos = end
    return Declared("avi", declared_end or None, None, None)


# --- EBML (Matroska / WebM) ---------------------------------------------------------------------

_SEGMENT, _INFO, _TRACKS = 0x18538067, 0x1549A966, 0x1654AE6B
_TIMESTAMP_SCALE, _DURATION = 0x2AD7B1, 0x4489
_TRACK_ENTRY, _TRACK_TYPE, _DEFAULT_DURATION = 0xAE, 0x83, 0x23E383


class _Cut(ValueError):
    """The bytes end inside an EBML element header."""


def _vint(buf: bytes, pos: int, keep_marker: bool) -> tuple[int | None, int]:
    """(value, length) of the EBML variable-length integer at ``pos``; value None = unknown size.

    Raises :class:`_Cut` when ``buf`` ends inside it, ValueError when it is not a vint."""
    if pos >= len(buf):
        raise _Cut("EBML vint cut")
    if buf[pos] == 0:
        raise ValueError("bad EBML vint")
    first = buf[pos]
    length = 8 - first.bit_length() + 1
    if pos + length > len(buf):
        raise _Cut("EBML vint cut")
    value = int.from_bytes(buf[pos : pos + length], "big")
    if keep_marker:
        return value, length
    value &= (1 << (7 * length)) - 1
    return (None if value == (1 << (7 * length)) - 1 else value), length


def _elements(buf: bytes, start: int, end: int):
    """(id, data_start, data_end) of the EBML elements in ``buf[start:end]`` (complete ones only)."""
    pos = start
    while pos < end:
        try:
            eid, n = _vint(buf, pos, keep_marker=True)
            size, m = _vint(buf, pos + n, keep_marker=False)
        except ValueError:
            return
        data = pos + n + m
        if size is None or data + size > end:
            return
        yield eid, data, data + size
        pos = data + size


def _uint(b: bytes) -> int:
    return int.from_bytes(b, "big")


def _declared_ebml(f, size: int) -> Declared:
    f.seek(0)
    head = f.read(64)
    try:
        _, n = _vint(head, 0, keep_marker=True)
        hsize, m = _vint(head, n, keep_marker=False)
    except ValueError:
        return Declared("matroska/webm", None, None, None)
    pos = n + m + (hsize or 0)
    seg_end = None
    f.seek(pos)
    hdr = f.read(16)
    try:
        sid, n = _vint(hdr, 0, keep_marker=True)
        ssize, m = _vint(hdr, n, keep_marker=False)
    except ValueError:
        return Declared("matroska/webm", None, None, None)
    if sid != _SEGMENT:
        return Declared("matroska/webm", None, None, None)
    data = pos + n + m
    declared_end = data
    if ssize is not None:
        seg_end = data + ssize
        declared_end = seg_end
    scale, duration, default_duration = 1_000_000, None, None
    # walk the Segment's top-level children; each states its size, so a cut one shows up here
    pos = data
    limit = seg_end if seg_end is not None else size
    while pos < min(limit, size):
        f.seek(pos)
        hdr = f.read(16)
        try:
            eid, n = _vint(hdr, 0, keep_marker=True)
            esize, m = _vint(hdr, n, keep_marker=False)
        except _Cut:
            declared_end = max(declared_end, pos + len(hdr) + 1)  # the file ends in a header
            break
        except ValueError:  # not an element (e.g. zero padding): nothing more is declared
            break
        if esize is None:  # unknown-size (live) cluster: nothing declared beyond this point
            break
        end = pos + n + m + esize
        declared_end = max(declared_end, end)
        if eid in (_INFO, _TRACKS) and end <= size and esize <= _MAX_HEADER_BYTES:
            f.seek(pos + n + m)
            body = f.read(esize)
            if eid == _INFO:
                for cid, s, e in _elements(body, 0, len(body)):
                    if cid == _TIMESTAMP_SCALE:
                        scale = _uint(body[s:e]) or scale
                    elif cid == _DURATION and e - s in (4, 8):
                        duration = struct.unpack(">f" if e - s == 4 else ">d", body[s:e])[0]
            else:
                default_duration = _video_default_duration(body) or default_duration
        pos = end
    seconds = duration * scale / 1e9 if duration and duration > 0 else None
    fps = 1e9 / default_duration if default_duration else None
    return Declared("matroska/webm", declared_end if declared_end > data else None, None, seconds, fps)


def _video_default_duration(tracks: bytes) -> int | None:
    for eid, s, e in _elements(tracks, 0, len(tracks)):
        if eid != _TRACK_ENTRY:
            continue
        fields = {cid: tracks[cs:ce] for cid, cs, ce in _elements(tracks, s, e)}
        if _uint(fields.get(_TRACK_TYPE, b"")) == 1:
            return _uint(fields[_DEFAULT_DURATION]) if _DEFAULT_DURATION in fields else None
    return None
