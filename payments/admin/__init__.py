"""The operators' admin for the payments models, one module per area; importing registers them."""

from payments.admin import currencies, deposits, ledger, operations, withdrawals

__all__ = ["currencies", "deposits", "ledger", "operations", "withdrawals"]
