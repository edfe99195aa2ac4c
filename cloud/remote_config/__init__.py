"""Remote configuration of gateways: desired configs, versions, drift, history, rollouts.

`store` keeps it (SQLite or PostgreSQL, the registry's database), `validate` runs the checks of
`edge-agent check` plus the remote rules, `service` talks to the gateways over MQTT
(docs/wire.md, "Remote configuration"), `rollout` drives a change across many gateways.
"""
