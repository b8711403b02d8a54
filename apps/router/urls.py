from django.urls import path

from apps.router import api

urlpatterns = [
    path("infer", api.InferView.as_view(), name="api-infer"),
    path("jobs/", api.JobListView.as_view(), name="api-jobs"),
    path("jobs/<uuid:job_id>", api.JobDetailView.as_view(), name="api-job-detail"),
]
