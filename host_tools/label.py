"""The device label (62 x 64 mm, PNG at 300 dpi and PDF). Upper half: product and model,
device id, the device's own password, and a QR code of the setup address. Lower half: the
set-up Wi-Fi network (SSID and WPA2 passphrase, firmware/setupap.py) and its Wi-Fi QR code
(WIFI:T:WPA;S:...;P:...;;), which a phone's camera joins in one step. The label carries
secrets, so its files are written 0600 and belong to the label printer, not to an archive."""

import io
import os
from pathlib import Path

import qrcode
from fpdf import FPDF
from PIL import Image, ImageDraw, ImageFont

from .errors import UsageError

WIDTH_MM, HEIGHT_MM = 62.0, 64.0
SECTION_MM = 32.0  # the Wi-Fi half starts here
DPI = 300
MARGIN_MM = 2.0
QR_BORDER = 2  # quiet zone, in modules (the label's white margin adds to it)
QR_MODULE_PX = 9  # PNG pixels per module: ~0.76 mm, well above a phone camera's limit
LINE = 1.45  # line pitch, in font sizes
QR_ORIGIN_PX = (round(MARGIN_MM / 25.4 * DPI), round(MARGIN_MM / 25.4 * DPI))
WIFI_ORIGIN_PX = (QR_ORIGIN_PX[0], round((SECTION_MM + MARGIN_MM) / 25.4 * DPI))


def setup_url(device_id):
    """What the QR code holds: the device's local setup page, found by mDNS under its id.
    The id in the query lets the setup page (and an app) confirm it reached this device:
    it is also the CN of the certificate the page is served with."""
    return f"https://{device_id}.local/setup?id={device_id}"


def wifi_qr_text(rec):
    """The second QR code: joins a phone to the device's set-up access point."""
    from .onboarding import ap_ssid, wifi_qr

    return wifi_qr(ap_ssid(rec["device_id"]), rec["ap_passphrase"])


def qr_matrix(data):
    """The QR code of `data` as rows of booleans (True = dark), quiet zone included."""
    qr = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=QR_BORDER)
    qr.add_data(data)
    qr.make(fit=True)
    return qr.get_matrix()


def _px(mm):
    return round(mm / 25.4 * DPI)


def _lines(rec):
    return [(f"{rec['product']}  {rec['model']}", 28),
            ("Device ID", 22), (rec["device_id"], 32),
            ("Password", 22), (rec["password"], 32),
            ("Scan to set up, then change the password", 17)]


def _sections(rec):
    """(QR text, lines, top in mm) of each half of the label."""
    out = [(setup_url(rec["device_id"]), _lines(rec), 0.0)]
    if rec.get("ap_passphrase"):
        from .onboarding import ap_ssid

        out.append((wifi_qr_text(rec), [("Set-up Wi-Fi (new or reset device)", 20),
                                        (ap_ssid(rec["device_id"]), 28),
                                        ("Wi-Fi passphrase", 22), (rec["ap_passphrase"], 32),
                                        ("Scan to join; hold the button 3 s", 17),
                                        ("to open it again", 17)], SECTION_MM))
    return out


def render_png(rec):
    """A PIL image of the label for `rec` (a dict with product, model, device_id, password)."""
    w, h = _px(WIDTH_MM), _px(HEIGHT_MM)
    img = Image.new("1", (w, h), 1)
    draw = ImageDraw.Draw(img)
    for data, lines, top in _sections(rec):
        matrix = qr_matrix(data)
        x0, y0 = QR_ORIGIN_PX[0], QR_ORIGIN_PX[1] + _px(top)
        for r, row in enumerate(matrix):
            for c, dark in enumerate(row):
                if dark:
                    x, y = x0 + c * QR_MODULE_PX, y0 + r * QR_MODULE_PX
                    draw.rectangle([x, y, x + QR_MODULE_PX - 1, y + QR_MODULE_PX - 1], fill=0)
        tx = x0 + len(matrix) * QR_MODULE_PX + _px(1)
        ty = _px(MARGIN_MM + top)
        for text, size in lines:
            font = ImageFont.load_default(size=size)
            draw.text((tx, ty), text, font=font, fill=0)
            ty += round(size * LINE)
    return img


def render_pdf(rec):
    """The label as a one-page PDF (bytes), the QR code drawn as vector squares."""
    pdf = FPDF(orientation="L", unit="mm", format=(HEIGHT_MM, WIDTH_MM))
    pdf.set_margin(0)
    pdf.set_auto_page_break(False)
    pdf.add_page()
    pdf.set_title(f"Label {rec['device_id']}")
    module = QR_MODULE_PX / DPI * 25.4
    pdf.set_fill_color(0)
    mono_texts = (rec["device_id"], rec["password"], rec.get("ap_passphrase"))
    for data, lines, top in _sections(rec):
        matrix = qr_matrix(data)
        for r, row in enumerate(matrix):
            for c, dark in enumerate(row):
                if dark:
                    pdf.rect(MARGIN_MM + c * module, top + MARGIN_MM + r * module, module,
                             module, style="F")
        tx = MARGIN_MM + len(matrix) * module + 1
        ty = top + MARGIN_MM
        for text, size in lines:
            pt = size * 72 / DPI  # the PNG's pixel size in points
            mono = text in mono_texts
            pdf.set_font("Courier" if mono else "Helvetica", style="B" if mono else "", size=pt)
            while pdf.get_string_width(text) > WIDTH_MM - MARGIN_MM - tx and pt > 4:
                pt -= 0.25  # Courier is wider than the PNG's font: shrink to fit the label
                pdf.set_font_size(pt)
            pdf.set_xy(tx, ty)
            pdf.cell(text=text)
            ty += size * LINE / DPI * 25.4
    return bytes(pdf.output())


def _write_secret(path, data):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def write(rec, directory):
    """Write <directory>/<device_id>.png and .pdf (0600, never overwriting); their paths."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    png, pdf = d / f"{rec['device_id']}.png", d / f"{rec['device_id']}.pdf"
    for p in (png, pdf):
        if p.exists():
            raise UsageError(f"{p} exists; refusing to overwrite a label")
    buf = io.BytesIO()
    render_png(rec).save(buf, format="PNG", dpi=(DPI, DPI))
    made = []
    try:  # an error or an interrupt (Ctrl-C, SIGTERM) leaves no label, not half of one
        for path, data in ((png, buf.getvalue()), (pdf, None)):
            made.append(path)
            _write_secret(path, render_pdf(rec) if data is None else data)
    except BaseException:
        for path in made:
            path.unlink(missing_ok=True)
        raise
    return {"png": str(png), "pdf": str(pdf)}
