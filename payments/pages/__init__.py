"""The end users' pages: sign in, balance and history, deposits and withdrawals."""
