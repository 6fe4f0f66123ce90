"""Scale-out tests: several worker hosts, through PgBouncer in transaction pooling."""
