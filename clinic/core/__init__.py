"""Cross-cutting pieces every domain uses: database base, errors, transactions, time, security."""
