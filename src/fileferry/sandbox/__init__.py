"""Local stand-ins on 127.0.0.1 for the demo and the tests: S3 (moto) and SFTP (asyncssh)."""
