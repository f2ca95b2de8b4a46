#!/usr/bin/env bash
# Install what the test stacks of tests/stacks.py need beside the Python extra `stacks`:
#   - PostgreSQL (Debian `postgresql`) and its JDBC driver for Spark (`libpostgresql-jdbc-java`,
#     /usr/share/java/postgresql.jar), for the Iceberg JDBC catalog stack;
#   - hadoop-aws-3.3.1.jar and aws-java-sdk-bundle-1.11.901.jar (Spark's S3A file system), for
#     the SeaweedFS stack, taken from the sagemaker-pyspark 1.4.5 sdist on PyPI (the only
#     package on PyPI or Debian that carries them) into .venv/share/iceberg-backfill/s3-jars/.
# Idempotent: each step is skipped when its result is already there. Never fails CI: a step
# that cannot run (not root, no network) is reported and the script exits 0, so the stack
# tests skip with a reason saying what is missing.
set -uo pipefail
cd "$(dirname "$0")/.."

VENV="${VENV:-.venv}"
JAR_DIR="$VENV/share/iceberg-backfill/s3-jars"
SDIST_PIN="sagemaker-pyspark==1.4.5"
SDIST_NAME="sagemaker_pyspark-1.4.5"
JARS=(hadoop-aws-3.3.1.jar aws-java-sdk-bundle-1.11.901.jar)
missing=()

have_postgres() {
    compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null && [ -f /usr/share/java/postgresql.jar ]
}

# --- PostgreSQL server and JDBC driver (Debian) ---------------------------------------------
if have_postgres; then
    echo "install_stacks: postgresql and libpostgresql-jdbc-java already installed"
elif [ "$(id -u)" != "0" ]; then
    missing+=("postgresql libpostgresql-jdbc-java (not root: run as root or \`sudo apt-get install postgresql libpostgresql-jdbc-java\`)")
elif ! command -v apt-get >/dev/null; then
    missing+=("postgresql libpostgresql-jdbc-java (no apt-get on this machine)")
else
    echo "install_stacks: apt-get install postgresql libpostgresql-jdbc-java"
    if ! { DEBIAN_FRONTEND=noninteractive apt-get update -qq \
           && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
                  postgresql libpostgresql-jdbc-java >/dev/null; }; then
        missing+=("postgresql libpostgresql-jdbc-java (apt-get install failed, see above)")
    elif ! have_postgres; then
        missing+=("postgresql libpostgresql-jdbc-java (installed, but initdb or /usr/share/java/postgresql.jar not found)")
    fi
fi

# --- hadoop-aws and the AWS SDK bundle for Spark's S3A file system -------------------------
have_jars() {
    local j
    for j in "${JARS[@]}"; do [ -s "$JAR_DIR/$j" ] || return 1; done
}
if have_jars; then
    echo "install_stacks: S3A jars already in $JAR_DIR"
elif [ ! -x "$VENV/bin/pip" ]; then
    missing+=("S3A jars (no $VENV/bin/pip: create the venv first)")
else
    echo "install_stacks: extracting ${JARS[*]} from the $SDIST_PIN sdist into $JAR_DIR"
    tmp="$(mktemp -d)"
    if "$VENV/bin/pip" download -q --no-deps --no-binary :all: "$SDIST_PIN" -d "$tmp" \
        && mkdir -p "$JAR_DIR" \
        && tar -xzf "$tmp/$SDIST_NAME.tar.gz" -C "$tmp" \
               "${JARS[@]/#/$SDIST_NAME/deps/jars/}"; then
        for j in "${JARS[@]}"; do
            mv -f "$tmp/$SDIST_NAME/deps/jars/$j" "$JAR_DIR/$j.part" && mv -f "$JAR_DIR/$j.part" "$JAR_DIR/$j"
        done
    fi
    rm -rf "$tmp"
    have_jars || missing+=("S3A jars ${JARS[*]} (download or extraction of $SDIST_PIN failed, see above)")
fi

if [ ${#missing[@]} -gt 0 ]; then
    echo "install_stacks: NOT installed, the tests that need them will skip:"
    printf '  - %s\n' "${missing[@]}"
fi
exit 0
