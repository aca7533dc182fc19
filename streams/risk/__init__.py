"""The risk manager (issue 14, docs/risk.md): the control topic every worker follows, alerts, and the
risk stage that watches spend, exposed keys, budgets, dead letters and conflicting results."""
