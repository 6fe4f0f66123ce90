"""The SQL that ``books.assert_books_clean`` reads the books with (plain PostgreSQL, any role)."""

from __future__ import annotations

PAYMENTS_SQL = """
SELECT p.id, p.user_id, p.status, p.amount_usd, p.credited_usd, p.provider_payment_id,
       p.pay_amount, c.decimal_places
  FROM payments_payment p JOIN payments_currency c ON c.id = p.currency_id
"""

WITHDRAWALS_SQL = """
SELECT id, internal_withdrawal_id, user_id, status, amount_usd, provider_batch_id
  FROM payments_withdrawalrequest
"""

POSTINGS_SQL = """
SELECT id, transaction_type, user_id, amount_usd, payment_id, withdrawal_request_id
  FROM payments_transaction
"""

# One row (user_id, problem, detail) per way a user's chain or balance row is wrong: a gap or
# a repeat in 1..n, a balance_after that is not the running sum, a negative balance, a balance
# row that is not the ledger (sum, last balance_after, count), postings without a balance row.
CHAIN_SQL = """
WITH chain AS (
    SELECT user_id, sequence, amount_usd, balance_after,
           ROW_NUMBER() OVER w AS n,
           SUM(amount_usd) OVER w AS running,
           COUNT(*) OVER (PARTITION BY user_id) AS postings,
           LAST_VALUE(balance_after) OVER (
               PARTITION BY user_id ORDER BY sequence
               ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING) AS last_after
      FROM payments_transaction
    WINDOW w AS (PARTITION BY user_id ORDER BY sequence, id)
), totals AS (
    SELECT user_id, SUM(amount_usd) AS total, MAX(postings) AS postings,
           MAX(last_after) AS last_after
      FROM chain GROUP BY user_id
)
SELECT user_id, 'chain gap', 'posting ' || n || ' has sequence ' || sequence
  FROM chain WHERE sequence <> n
UNION ALL
SELECT user_id, 'balance_after is not the running sum',
       'sequence ' || sequence || ': ' || balance_after || ' <> ' || running
  FROM chain WHERE balance_after <> running
UNION ALL
SELECT user_id, 'negative balance_after', 'sequence ' || sequence || ': ' || balance_after
  FROM chain WHERE balance_after < 0
UNION ALL
SELECT b.user_id, 'balance row is not the ledger',
       b.balance_usd || ' / ' || b.transaction_count || ' postings; ledger '
       || COALESCE(t.total, 0) || ' / ' || COALESCE(t.postings, 0) || ', last '
       || COALESCE(t.last_after, 0)
  FROM payments_userbalance b LEFT JOIN totals t ON t.user_id = b.user_id
 WHERE b.balance_usd <> COALESCE(t.total, 0) OR b.balance_usd <> COALESCE(t.last_after, 0)
    OR b.transaction_count <> COALESCE(t.postings, 0) OR b.balance_usd < 0
UNION ALL
SELECT t.user_id, 'postings without a balance row', t.postings || ' postings'
  FROM totals t LEFT JOIN payments_userbalance b ON b.user_id = t.user_id
 WHERE b.user_id IS NULL
"""
