"""Payment providers (NowPayments); the configured client comes from payments.services.gateway."""
