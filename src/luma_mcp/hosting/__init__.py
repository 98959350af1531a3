"""Serving over streamable HTTP for a team: the app (`app`), who may open what (`admission`,
`session_caps`, `inflight`), what slow or many clients can hold (`limits`, `log_limits`),
stopping (`shutdown`) and the provider's callbacks route (`callbacks`).
May import every room but `stdio`, `simulator` and the command line."""
