"""``{% payments_dashboard %}``: the operators' dashboard, and its server-rendered SVG chart.

Each section is shown to staff who may view its model in the admin; someone who may view
none of them sees nothing. The chart is plain SVG computed here (Decimal arithmetic, no
JavaScript, nothing from a CDN), with a ``<title>``, a ``<desc>`` and a table of its figures.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django import template
from django.utils import timezone

from payments.admin import dashboard

register = template.Library()

WIDTH, HEIGHT = 640, 250
LEFT, RIGHT, TOP, BOTTOM = 70, 10, 14, 46
PLOT_W, PLOT_H = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
TICKS = 4
_TENTH = Decimal("0.1")
_WHAT = {"deposits": "deposits credited", "withdrawals": "withdrawals requested"}
_NICE = (Decimal(1), Decimal(2), Decimal("2.5"), Decimal(5), Decimal(10))


def _can_view(user: Any, model: str) -> bool:
    return bool(
        user.has_perm(f"payments.view_{model}") or user.has_perm(f"payments.change_{model}")
    )


@register.inclusion_tag("admin/payments/dashboard.html", takes_context=True)
def payments_dashboard(context: template.Context) -> dict[str, Any]:
    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or not (user.is_active and user.is_staff):
        return {"dashboard": None}
    now = timezone.now()
    board: dict[str, Any] = {"now": now}
    if _can_view(user, "withdrawalrequest"):
        board["withdrawals"] = dashboard.withdrawal_figures(now=now)
    if _can_view(user, "payment"):
        board["reviews"] = dashboard.review_figures()
    if _can_view(user, "ledgerdrift"):
        board["findings"] = dashboard.open_findings()
    if _can_view(user, "periodicrun"):
        board["jobs"] = dashboard.jobs()
        board["queues"] = dashboard.queue_depths()
    if _can_view(user, "payment") and _can_view(user, "withdrawalrequest"):
        board["chart"] = chart(dashboard.daily_activity(today=now.date()))
    return {"dashboard": board if len(board) > 1 else None}


@dataclass(frozen=True)
class Bar:
    kind: str  # deposits or withdrawals
    x: str
    y: str
    width: str
    height: str
    url: str
    title: str


@dataclass(frozen=True)
class ChartDay:
    day: date
    figures: dashboard.Day
    bars: list[Bar]
    label: str  # the x-axis label, on every fifth day and the last
    label_x: str


@dataclass(frozen=True)
class Tick:
    y: str
    label: str


@dataclass(frozen=True)
class Chart:
    days: list[ChartDay]
    ticks: list[Tick]
    total_deposits: int
    total_deposits_usd: Decimal
    total_withdrawals: int
    total_withdrawals_usd: Decimal
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    top: int = TOP
    plot_right: int = LEFT + PLOT_W
    plot_bottom: int = TOP + PLOT_H
    tick_x: int = LEFT - 6
    label_y: int = TOP + PLOT_H + 16
    x_title_x: int = LEFT + PLOT_W // 2
    x_title_y: int = HEIGHT - 6
    y_title_y: int = TOP + PLOT_H // 2


def nice_step(largest: Decimal) -> Decimal:
    """The smallest of 1, 2, 2.5, 5 x 10^k that makes ``TICKS`` steps cover ``largest``."""
    if largest <= 0:
        return Decimal(25)
    rough = largest / TICKS
    base = Decimal(1).scaleb(rough.adjusted())
    return next(m * base for m in _NICE if m * base >= rough)


def usd_label(value: Decimal) -> str:
    if value == value.to_integral_value():
        return f"${int(value):,}"
    return f"${value.quantize(Decimal('0.01')):,}"


def _fmt(value: Decimal) -> str:
    return str(value.quantize(_TENTH, rounding=ROUND_HALF_UP))


def chart(days: list[dashboard.Day]) -> Chart:
    """Grouped bars (deposits, withdrawals) of USD per day, on a shared scale."""
    top_usd = max((max(d.deposits_usd, d.withdrawals_usd) for d in days), default=Decimal(0))
    step = nice_step(top_usd)
    y_max = step * TICKS
    slot = Decimal(PLOT_W) / max(len(days), 1)
    bar_w = slot * Decimal("0.4")

    def y_of(value: Decimal) -> Decimal:
        return Decimal(TOP + PLOT_H) - value / y_max * PLOT_H

    out = []
    for index, d in enumerate(days):
        x0 = Decimal(LEFT) + slot * index + slot * Decimal("0.1")
        bars = []
        for offset, kind, count, usd, url in (
            (0, "deposits", d.deposits, d.deposits_usd, d.deposits_url),
            (1, "withdrawals", d.withdrawals, d.withdrawals_usd, d.withdrawals_url),
        ):
            if not count:
                continue
            top_y = y_of(usd)
            bars.append(
                Bar(
                    kind=kind,
                    x=_fmt(x0 + bar_w * offset),
                    y=_fmt(top_y),
                    width=_fmt(bar_w),
                    height=_fmt(max(Decimal(TOP + PLOT_H) - top_y, Decimal(1))),
                    url=url,
                    title=f"{d.day:%Y-%m-%d}: {count} {_WHAT[kind]}, {usd_label(usd)}",
                )
            )
        labelled = index % 5 == 0 or index == len(days) - 1
        out.append(
            ChartDay(
                day=d.day,
                figures=d,
                bars=bars,
                label=f"{d.day:%b} {d.day.day}" if labelled else "",
                label_x=_fmt(Decimal(LEFT) + slot * index + slot / 2),
            )
        )
    return Chart(
        days=out,
        ticks=[Tick(y=_fmt(y_of(step * i)), label=usd_label(step * i)) for i in range(TICKS + 1)],
        total_deposits=sum(d.deposits for d in days),
        total_deposits_usd=sum((d.deposits_usd for d in days), Decimal("0.00")),
        total_withdrawals=sum(d.withdrawals for d in days),
        total_withdrawals_usd=sum((d.withdrawals_usd for d in days), Decimal("0.00")),
    )
