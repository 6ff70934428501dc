"""FileFerry on AWS: Lambda handlers around the workflow's steps (``handlers``), their
settings from SSM and Secrets Manager (``settings``), and the Step Functions mode of
the service (``stepfunctions``). ``infrastructure/template.yaml`` deploys it."""
