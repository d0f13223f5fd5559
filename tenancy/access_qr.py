"""A teammate's 2N QR code as an image to print or send: SVG or PNG, with a caption under it.

The QR code holds the digits of `access.intercom_qr` and nothing else: the intercom's camera reads them
and matches them against the switch codes of its directory users (2N needs ≥ 10 digits for QR entry).
Error correction M, a quiet zone of 4 modules (ISO/IEC 18004). The caption (teammate, property) is
outside text: XML-escaped in SVG, drawn as pixels in PNG.

`write_qr(path, code, caption)` writes the file with mode 0600 (it opens a door). Raises ValueError for
a path that is neither `.svg` nor `.png`.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from html import escape
from pathlib import Path

import segno
from PIL import Image, ImageDraw, ImageFont

SCALE = 10  # pixels per module
BORDER = 4  # modules of quiet zone
FONT_SIZE = 22
LINE = 30  # pixels per caption line


def qr_svg(code: str, caption: Sequence[str]) -> bytes:
    qr = segno.make(code, error="m", micro=False)
    width, height = qr.symbol_size(scale=SCALE, border=BORDER)
    buf = io.BytesIO()
    qr.save(buf, kind="svg", scale=SCALE, border=BORDER, xmldecl=False, svgns=True)
    inner = buf.getvalue().decode()
    # The QR's own <svg> nests inside ours; the caption lines go below it, centred.
    total = height + LINE * len(caption) + LINE // 2
    lines = "".join(
        f'<text x="{width // 2}" y="{height + LINE * (i + 1) - 6}" text-anchor="middle" '
        f'font-family="sans-serif" font-size="{FONT_SIZE}">{escape(text)}</text>'
        for i, text in enumerate(caption))
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{total}" '
            f'viewBox="0 0 {width} {total}"><rect width="100%" height="100%" fill="#fff"/>'
            f"{inner}{lines}</svg>\n").encode()


def qr_png(code: str, caption: Sequence[str]) -> bytes:
    qr = segno.make(code, error="m", micro=False)
    buf = io.BytesIO()
    qr.save(buf, kind="png", scale=SCALE, border=BORDER)
    symbol = Image.open(io.BytesIO(buf.getvalue())).convert("L")
    width, height = symbol.size
    image = Image.new("L", (width, height + LINE * len(caption) + LINE // 2), 255)
    image.paste(symbol, (0, 0))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=FONT_SIZE)
    for i, text in enumerate(caption):
        draw.text((width // 2, height + LINE * i + LINE // 2), text, fill=0, font=font, anchor="mt")
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def write_qr(path: Path, code: str, caption: Sequence[str]) -> None:
    kind = path.suffix.lower()
    if kind not in (".svg", ".png"):
        raise ValueError(f"{path.name}: use a .svg or .png file name")
    data = qr_svg(code, caption) if kind == ".svg" else qr_png(code, caption)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
