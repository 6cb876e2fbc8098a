"""Alert rules, the Alertmanager receiver and remediation actions."""
