"""Router pages: submit a Bronze job and watch it run; the Prometheus metrics endpoint."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, QueryDict
from django.shortcuts import redirect, render

from apps.router import selectors, services
from apps.router.models import Job
from apps.security.errors import error_body
from apps.security.scopes import ADMIN, JOBS
from apps.security.selectors import user_scopes
from bodybroker.htmx import htmx_partial


def _visible_jobs(request: HttpRequest):  # type: ignore[no-untyped-def]
    return selectors.jobs_visible_to(
        user=request.user, key=None, sees_all=ADMIN in user_scopes(request.user)
    )


JOBS_PAGE_ROWS = 25
MAX_JOB_TOKENS = 2048


def _job_from_form(request: HttpRequest) -> tuple[Job | None, str]:
    """Submit the jobs page form's job; (job, "") or (None, what to fix)."""
    if JOBS not in user_scopes(request.user):
        return None, "Your role cannot submit jobs (it needs the 'jobs' scope)."
    prompt = request.POST.get("prompt", "").strip()
    try:
        max_tokens = int(request.POST.get("max_tokens", "200"))
    except ValueError:
        max_tokens = 0
    if not prompt or not 1 <= max_tokens <= MAX_JOB_TOKENS:
        return None, f"Write a prompt and pick 1–{MAX_JOB_TOKENS:,} tokens."
    try:
        job = services.job_submit(
            request=services.InferenceRequest(
                messages=[{"role": "user", "content": prompt}], sla="async", max_tokens=max_tokens
            ),
            submitted_by_user=request.user,
        )
    except services.JobRefused as refused:
        return None, f"Not queued: {refused.message}."
    return job, ""


@login_required
def jobs(request: HttpRequest) -> HttpResponse:
    """The jobs list: filters (kept in the URL), pages of ``JOBS_PAGE_ROWS``, and the form that
    queues a job on Bronze."""
    error, prompt, max_tokens = "", None, None
    if request.method == "POST":
        job, error = _job_from_form(request)
        if job is not None:
            return redirect("job-detail", job_id=job.id)
        prompt, max_tokens = request.POST.get("prompt", ""), request.POST.get("max_tokens", "")
    visible = _visible_jobs(request)
    filters = {name: request.GET.get(name, "").strip() for name in selectors.JOB_FILTERS}
    page = Paginator(selectors.jobs_filtered(jobs=visible, filters=filters), JOBS_PAGE_ROWS)
    page_obj = page.get_page(request.GET.get("page"))
    query = QueryDict(mutable=True)
    query.update({name: value for name, value in filters.items() if value})
    context = {
        "jobs": page_obj.object_list,
        "page_obj": page_obj,
        "filters": filters,
        "filtered": any(filters.values()),
        "choices": selectors.job_filter_choices(jobs=visible),
        "query": query.urlencode(),
        "error": error,
        "prompt": prompt,
        "max_tokens": max_tokens,
    }
    if htmx_partial(request, name="table"):
        return render(request, "partials/jobs_table.html", context)
    return render(request, "pages/jobs.html", context, status=400 if error else 200)


@login_required
def job_detail(request: HttpRequest, job_id: str) -> HttpResponse:
    job = selectors.job_with_attempts(jobs=_visible_jobs(request), job_id=job_id)
    if job is None:
        raise Http404("no such job")
    return render(request, "pages/job_detail.html", {"job": job})


def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus exposition of the router's metrics: an ``admin`` key or an admin's session."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    from apps.router.metrics import QUEUE_DEPTH, REGISTRY
    from apps.router.models import Job, JobStatus
    from apps.security.selectors import api_key_authenticate, raw_key_from_headers

    raw = raw_key_from_headers(request.headers)
    if raw is not None:
        key = api_key_authenticate(raw)
        allowed = key is not None and ADMIN in key.scopes
    else:
        allowed = ADMIN in user_scopes(request.user)
    if not allowed:
        return JsonResponse(
            error_body("metrics need the 'admin' scope", type_="permission_denied"),
            status=401 if raw is None and not request.user.is_authenticated else 403,
        )
    for state in (JobStatus.QUEUED, JobStatus.RUNNING):
        QUEUE_DEPTH.labels(state).set(Job.objects.filter(status=state).count())
    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)
