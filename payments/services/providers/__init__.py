"""Payment providers: NowPayments (its client, config, IPN signature and the configured gateway)."""
