"""The sign-in page, throttled (``apps.security.signin``): over the limit it answers 429."""

from __future__ import annotations

from typing import Any

from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.views import LoginView
from django.core.exceptions import ValidationError
from django.http import HttpResponse

from apps.security.signin import (
    SignInRefusal,
    client_address,
    signin_failed,
    signin_refusal,
    signin_succeeded,
)


class ThrottledSignIn:
    """Checks the throttle before the password and counts wrong passwords (a form mixin)."""

    request: Any
    data: Any
    refusal: SignInRefusal | None = None

    def clean(self) -> dict[str, Any]:
        username = str(self.data.get("username", ""))[:150]
        address = client_address(self.request)
        self.refusal = signin_refusal(username=username, address=address)
        if self.refusal is not None:
            raise ValidationError(self.refusal.message, code="throttled")
        try:
            cleaned: dict[str, Any] = super().clean()  # type: ignore[misc]
        except ValidationError as exc:
            if getattr(exc, "code", None) == "invalid_login":
                signin_failed(username=username, address=address)
            raise
        signin_succeeded(username=username)
        return cleaned


class SignInForm(ThrottledSignIn, AuthenticationForm):
    error_messages = {
        **AuthenticationForm.error_messages,
        "invalid_login": "Your username and password didn't match.",
    }


class AdminSignInForm(ThrottledSignIn, AdminAuthenticationForm):
    pass


class SignInView(LoginView):
    """Django's login view with the throttled form; a throttled attempt is a 429."""

    authentication_form = SignInForm

    def form_invalid(self, form: Any) -> HttpResponse:
        response: HttpResponse = super().form_invalid(form)
        refusal = getattr(form, "refusal", None)
        if refusal is not None:
            response.status_code = 429
            response["Retry-After"] = str(refusal.retry_after_s)
        return response
