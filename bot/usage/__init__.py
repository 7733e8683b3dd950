"""Usage and spend: the ledger of every call, spending caps, and the reports built on them."""
