"""payments/qr.py: the QR code endpoint, drawn locally, for the payment's owner only."""

from __future__ import annotations

import struct
import zlib
from decimal import Decimal
from xml.etree import ElementTree

import pytest
import segno
from django.contrib.auth.models import Permission
from django.shortcuts import resolve_url

from payments.models import Payment
from payments.qr import QUIET_ZONE
from tests.factories import CurrencyFactory, PaymentFactory, UserFactory

pytestmark = pytest.mark.django_db

ADDRESS = "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"


@pytest.fixture
def payment() -> Payment:
    btc = CurrencyFactory(code="BTC", name="Bitcoin", token="BTC", network="BTC")
    return PaymentFactory(
        currency=btc,
        provider_payment_id="5077125051",
        pay_address=ADDRESS,
        pay_amount=Decimal("0.000416670000000000"),
    )


def url(payment: Payment, fmt: str = "png", size: object = None) -> str:
    base = f"/payments/qr/{payment.pk}.{fmt}"
    return base if size is None else f"{base}?size={size}"


def png_pixels(body: bytes) -> tuple[int, int, list[list[int]]]:
    """Width, height and the rows of a 1-bit greyscale PNG (0 dark, 1 light), checking every
    chunk's CRC and undoing the scanline filters."""
    assert body[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    data = b""
    while pos < len(body):
        (length,) = struct.unpack(">I", body[pos : pos + 4])
        kind, content = body[pos + 4 : pos + 8], body[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", body[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(kind + content) == crc, kind
        chunks[kind] = content
        if kind == b"IDAT":
            data += content
        pos += 12 + length
    assert b"IEND" in chunks
    width, height, depth, colour = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (depth, colour) == (1, 0), "1-bit greyscale"
    stride = (width + 7) // 8
    raw = zlib.decompress(data)
    assert len(raw) == height * (stride + 1)
    rows: list[list[int]] = []
    previous = bytes(stride)
    for y in range(height):
        kind, line = (
            raw[y * (stride + 1)],
            bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)]),
        )
        for i in range(stride):
            left, up = (line[i - 1] if i else 0), previous[i]
            upleft = previous[i - 1] if i else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - upleft
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - upleft)
                pred = left if pa <= pb and pa <= pc else up if pb <= pc else upleft
                line[i] = (line[i] + pred) & 0xFF
        previous = bytes(line)
        rows.append([(line[x // 8] >> (7 - x % 8)) & 1 for x in range(width)])
    return width, height, rows


def modules_of(rows: list[list[int]], scale: int) -> list[list[int]]:
    """The dark (1) / light (0) modules read back from the pixels, quiet zone removed."""
    count = len(rows) // scale
    return [
        [1 - rows[y * scale][x * scale] for x in range(QUIET_ZONE, count - QUIET_ZONE)]
        for y in range(QUIET_ZONE, count - QUIET_ZONE)
    ]


def test_the_owner_gets_a_png_that_encodes_the_payment_uri(client, payment):
    client.force_login(payment.user)
    response = client.get(url(payment, "png", 300))
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    width, height, rows = png_pixels(response.content)
    code = segno.make(payment.qr_data, error="m", micro=False)
    side = code.symbol_size(scale=1, border=QUIET_ZONE)[0]
    scale = 300 // side
    assert width == height == side * scale <= 300
    assert width > 300 - side  # the largest whole-pixel module that fits
    expected = [[1 if bit else 0 for bit in row] for row in code.matrix]
    assert modules_of(rows, scale) == expected
    assert payment.qr_data == f"bitcoin:{ADDRESS}?amount=0.00041667"


def test_the_owner_gets_an_svg_of_the_requested_size(client, payment):
    client.force_login(payment.user)
    response = client.get(url(payment, "svg", 240))
    assert response.status_code == 200
    assert response["Content-Type"] == "image/svg+xml"
    # Our own output, parsed to prove it is well-formed SVG of the asked size.
    root = ElementTree.fromstring(response.content)  # noqa: S314
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert float(root.get("width")) == float(root.get("height")) == 240
    assert root.find("{http://www.w3.org/2000/svg}path") is not None
    assert ADDRESS not in response.content.decode()  # drawn, not written out


def test_the_default_size_and_the_model_url(client, payment):
    client.force_login(payment.user)
    assert payment.get_qr_code_url() == url(payment, "png", 200)
    assert payment.get_qr_code_url(size=300, fmt="svg") == url(payment, "svg", 300)
    assert payment.get_qr_code_url(size=5000) == url(payment, "png", 1000)
    width, _, _ = png_pixels(client.get(url(payment)).content)
    assert width <= 200
    assert client.get(payment.get_qr_code_url(size=300)).status_code == 200


def test_another_user_gets_404(client, payment):
    client.force_login(UserFactory())
    assert client.get(url(payment, "png")).status_code == 404
    assert client.get(url(payment, "svg")).status_code == 404


def test_staff_who_may_view_payments_see_it_and_other_staff_do_not(client, payment):
    staff = UserFactory(is_staff=True)
    client.force_login(staff)
    assert client.get(url(payment)).status_code == 404
    staff.user_permissions.add(Permission.objects.get(codename="view_payment"))
    staff = type(staff).objects.get(pk=staff.pk)  # drop the cached permissions
    client.force_login(staff)
    assert client.get(url(payment)).status_code == 200


def test_anonymous_is_sent_to_sign_in(client, settings, payment):
    response = client.get(url(payment, "png", 300))
    assert response.status_code == 302
    assert response["Location"].startswith(resolve_url(settings.LOGIN_URL))
    assert ADDRESS not in response["Location"]


@pytest.mark.parametrize(
    "size", ["", "49", "1001", "abc", "300x300", "-100", "1e3", "+300", " 300", "99999999999"]
)
def test_a_bad_size_is_a_400_with_a_code(client, payment, size):
    client.force_login(payment.user)
    response = client.get(url(payment, "png", size))
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_qr_size"


def test_unknown_formats_payments_and_methods(client, payment):
    client.force_login(payment.user)
    assert client.get(url(payment, "gif")).status_code == 404
    assert client.get(f"/payments/qr/{payment.pk}.png.png").status_code == 404
    assert client.get("/payments/qr/00000000-0000-0000-0000-000000000000.png").status_code == 404
    assert client.post(url(payment)).status_code == 405


def test_no_qr_before_there_is_an_address(client):
    unregistered = PaymentFactory()
    client.force_login(unregistered.user)
    assert unregistered.get_qr_code_url() is None
    assert client.get(url(unregistered)).status_code == 404


def test_private_caching_and_a_conditional_get(client, payment):
    client.force_login(payment.user)
    first = client.get(url(payment, "png", 300))
    cache_control = {part.strip() for part in first["Cache-Control"].split(",")}
    assert {"private", "max-age=3600"} <= cache_control
    assert "public" not in cache_control
    etag = first["ETag"]
    assert etag[0] == etag[-1] == '"'
    again = client.get(url(payment, "png", 300), HTTP_IF_NONE_MATCH=etag)
    assert again.status_code == 304
    assert again.content == b""
    assert again["ETag"] == etag
    # Another size or format is another image, with its own tag.
    assert client.get(url(payment, "png", 301))["ETag"] != etag
    assert client.get(url(payment, "svg", 300))["ETag"] != etag
    assert client.get(url(payment, "png", 300)).content == first.content


def test_no_third_party_url_in_the_model_or_the_response(client, payment):
    client.force_login(payment.user)
    qr_url = payment.get_qr_code_url(size=300)
    assert qr_url.startswith("/payments/qr/")
    assert "://" not in qr_url
    assert ADDRESS not in qr_url
    body = client.get(url(payment, "svg", 300)).content.decode()
    assert "http://" not in body.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in body
