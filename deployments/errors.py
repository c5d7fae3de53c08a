"""Errors a stage raises about the request it was given rather than about itself; the
ingress answers them as the client's error (400), never as a stage failure."""


class RequestRejected(ValueError):
    """The stage cannot serve this request as it is (a prompt longer than the model's
    context, for one); the message says why, for the client."""
