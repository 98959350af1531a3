"""Serving over streamable HTTP for a team: the app (`app`), run by `serve`; who may call
(`authentication`), where it listens (`addresses`), why it will not start (`errors`); who may
open what (`admission`, `session_caps`, `inflight`), what slow or many clients can hold
(`limits`, `log_limits`), stopping (`shutdown`) and the provider's callbacks route (`callbacks`).
May import every room but `stdio`, `simulator` and the command line."""
