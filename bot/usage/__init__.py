"""Accounts for what every upstream call cost, per day, per person, per workspace."""
