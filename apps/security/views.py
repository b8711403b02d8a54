"""Pages of identity and access: the sign-in page, throttled (``apps.security.signin``: over
the limit it answers 429), and the admins' API keys page (mint, change, revoke)."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.views import LoginView
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from apps.admin_ops.actors import actor_for
from apps.security import selectors
from apps.security.forms import ApiKeySettingsForm
from apps.security.models import ApiKey
from apps.security.scopes import ADMIN
from apps.security.selectors import user_scopes
from apps.security.services import api_key_change, api_key_create, api_key_revoke
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


# --- API keys -------------------------------------------------------------------------------


def _admins_only(request: HttpRequest) -> HttpResponse | None:
    if ADMIN in user_scopes(request.user):
        return None
    return render(
        request,
        "pages/section.html",
        {"heading": "API keys", "summary": "API keys are managed by admins."},
        status=403,
    )


def _secret_page(response: HttpResponse) -> HttpResponse:
    """A page holding a raw key is kept out of every cache and the browser's history copy."""
    response["Cache-Control"] = "no-store"
    return response


@login_required
def api_keys(request: HttpRequest) -> HttpResponse:
    """Every key (name, prefix, scopes, limits, owner, dates) and the form that mints one.

    The raw key is on the answer to the form and nowhere else: only its digest is stored."""
    refused = _admins_only(request)
    if refused is not None:
        return refused
    form = ApiKeySettingsForm(request.POST or None)
    created: tuple[ApiKey, str] | None = None
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                created = api_key_create(**form.cleaned_data)
            except ValueError as exc:  # UnknownScopeError too: the form lists the scopes
                form.add_error(None, str(exc))
        if created is None:
            status = 400
        else:
            form = ApiKeySettingsForm()
    response = render(
        request,
        "security/api_keys.html",
        {
            "keys": list(selectors.api_keys()),
            "form": form,
            "created": created[0] if created else None,
            "raw_key": created[1] if created else "",
        },
        status=status,
    )
    return _secret_page(response) if created else response


@login_required
def api_key_detail(request: HttpRequest, key_id: int) -> HttpResponseBase:
    """One key: change its name, scopes, owner and limits (audited, before and after), or
    revoke it. A revoked key is shown as it was revoked and changes no more."""
    refused = _admins_only(request)
    if refused is not None:
        return refused
    key = selectors.api_key(key_id=key_id)
    if key is None:
        raise Http404("no such API key")
    form = ApiKeySettingsForm.for_key(key, request.POST or None)
    status = 200
    if request.method == "POST":
        if key.revoked_at is not None:
            form.add_error(None, "This key is revoked; it stays as it was.")
            status = 409
        elif form.is_valid():
            changes = {name: form.cleaned_data[name] for name in form.changed_data}
            try:
                api_key_change(key_id=key.pk, changes=changes, actor=actor_for(user=request.user))
            except ValueError as exc:
                form.add_error(None, str(exc))
                status = 400
            else:
                if changes:
                    messages.success(request, f"Saved: {', '.join(sorted(changes))} changed.")
                else:
                    messages.info(request, "Nothing changed.")
                return redirect("api-key-detail", key_id=key.pk)
        else:
            status = 400
    return render(
        request, "security/api_key_detail.html", {"key": key, "form": form}, status=status
    )


@require_POST
@login_required
def api_key_revoke_view(request: HttpRequest, key_id: int) -> HttpResponseBase:
    """Revoke a key: it stops authenticating at once and its open websockets are closed."""
    refused = _admins_only(request)
    if refused is not None:
        return refused
    key = selectors.api_key(key_id=key_id)
    if key is None:
        raise Http404("no such API key")
    if key.revoked_at is None:
        api_key_revoke(key=key)
        messages.success(request, f"Revoked {key.name} (bb_{key.prefix}_…).")
    return redirect("api-key-detail", key_id=key.pk)
