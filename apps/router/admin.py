from django.contrib import admin

from apps.router.models import Job, JobAttempt


class JobAttemptInline(admin.TabularInline[JobAttempt, Job]):
    model = JobAttempt
    extra = 0
    readonly_fields = (
        "number",
        "backend",
        "outcome",
        "error",
        "started_at",
        "finished_at",
        "latency_ms",
    )


@admin.register(Job)
class JobAdmin(admin.ModelAdmin[Job]):
    list_display = ("id", "kind", "status", "attempts", "created_at", "finished_at")
    list_filter = ("status", "kind")
    inlines = (JobAttemptInline,)
    readonly_fields = ("created_at", "started_at", "finished_at")
