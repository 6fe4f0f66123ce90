"""Routes of the end users' pages, mounted at the site root (no namespace: the seed's
``redirect('payment_detail', payment_id=...)`` resolves here)."""

from django.urls import path

from payments.pages import account, api_keys, auth, deposits, status, withdrawals

urlpatterns = [
    path("login/", auth.SignInView.as_view(), name="login"),
    path("logout/", auth.SignOutView.as_view(), name="logout"),
    path("", account.account, name="account"),
    path("deposit/", deposits.create_deposit, name="create_deposit"),
    path("deposits/<uuid:payment_id>/", deposits.payment_detail, name="payment_detail"),
    path("deposits/<uuid:payment_id>/status/", status.payment_status, name="payment_status"),
    path("withdraw/", withdrawals.create_withdrawal, name="create_withdrawal"),
    path(
        "withdrawals/<uuid:withdrawal_id>/",
        withdrawals.withdrawal_detail,
        name="withdrawal_detail",
    ),
    path(
        "withdrawals/<uuid:withdrawal_id>/cancel/",
        withdrawals.withdrawal_cancel,
        name="withdrawal_cancel",
    ),
    path("api-keys/", api_keys.api_keys, name="api_keys"),
]
