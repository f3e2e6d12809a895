#!/usr/bin/env bash
# Static checks of the Dockerfile (CI has no Docker engine, so the image is never built there):
#   - every base image pinned to an exact version (x.y.z tag or @sha256 digest; no `latest`,
#     no missing tag, no bare major/minor like `node:20` or `node:20-slim`);
#   - the final stage runs as a non-root USER;
#   - the final stage carries production dependencies only: its installs use `--omit=dev` (or an
#     equivalent), and it copies no node_modules from a stage that installed dev dependencies;
#   - the final stage declares HEALTHCHECK and EXPOSE.
# usage: .ci/lint-dockerfile.sh [DOCKERFILE]   (default: the repository's Dockerfile)
# Exit status: 0 clean, 1 with one `file:line: message` per problem, 2 on usage errors.
set -euo pipefail
# Dockerfile words such as `*.json` must never expand against this script's working directory.
set -f

file=${1:-"$(dirname "$0")/../Dockerfile"}
if [[ ! -f $file ]]; then
  echo "lint-dockerfile: $file: no such file" >&2
  exit 2
fi
ignore_file="$(dirname "$file")/.dockerignore"

problems=()
fail() { problems+=("$file:$1: $2"); }

# ---- read logical instructions: comments dropped, `\` continuations joined, start line kept
instr_line=()
instr_text=()
buf=''
buf_start=0
n=0
while IFS= read -r raw || [[ -n $raw ]]; do
  n=$((n + 1))
  raw=${raw%$'\r'}
  trimmed="${raw#"${raw%%[![:space:]]*}"}"
  [[ -z $trimmed || $trimmed == \#* ]] && continue
  [[ -z $buf ]] && buf_start=$n
  if [[ $trimmed == *\\ ]]; then
    buf+="${trimmed%\\} "
    continue
  fi
  buf+=$trimmed
  instr_line+=("$buf_start")
  instr_text+=("$buf")
  buf=''
done <"$file"
if [[ -n $buf ]]; then
  instr_line+=("$buf_start")
  instr_text+=("$buf")
fi

# ---- helpers
declare -A arg_default=()
declare -A stage_index=()
# Per stage: dev dependencies present (1/0), production dependencies present (1/0), workdir,
# USER (+ line), HEALTHCHECK arguments, EXPOSE seen, line of its FROM. A stage built FROM an
# earlier stage inherits all of these.
stage_dev=()
stage_prod=()
stage_workdir=()
stage_user=()
stage_user_line=()
stage_health=()
stage_expose=()
stage_start=()

lower() { printf '%s' "${1,,}"; }

# Substitutes ${NAME}, ${NAME:-default} and $NAME from global ARG defaults.
expand() {
  local s=$1 name
  while [[ $s =~ \$\{([A-Za-z_][A-Za-z0-9_]*)(:?-([^}]*))?\} ]]; do
    name=${BASH_REMATCH[1]}
    if [[ -n ${arg_default[$name]+x} ]]; then
      s=${s/"${BASH_REMATCH[0]}"/${arg_default[$name]}}
    elif [[ -n ${BASH_REMATCH[2]} ]]; then
      s=${s/"${BASH_REMATCH[0]}"/${BASH_REMATCH[3]}}
    else
      break
    fi
  done
  while [[ $s =~ \$([A-Za-z_][A-Za-z0-9_]*) && -n ${arg_default[${BASH_REMATCH[1]}]+x} ]]; do
    s=${s/"${BASH_REMATCH[0]}"/${arg_default[${BASH_REMATCH[1]}]}}
  done
  printf '%s' "$s"
}

# Splits exec-form (JSON array) or shell-form arguments into words on stdout, one per line.
words() {
  local s=$1
  if [[ $s =~ ^\[.*\]$ ]]; then
    s=${s#[}
    s=${s%]}
    s=${s//\"/}
    s=${s//,/ }
  fi
  printf '%s\n' $s
}

installs_dev() { # $1: a RUN command; true when it installs packages including dev dependencies
  local c=" $1 "
  [[ $c =~ [[:space:]](npm|pnpm|yarn)[[:space:]]+(ci|install|i|add)([[:space:]]|$) ]] || return 1
  [[ $c =~ --omit[=[:space:]]dev|--production|--only[=[:space:]]prod|--prod([[:space:]]|$) ]] && return 1
  return 0
}
installs_prod() {
  local c=" $1 "
  [[ $c =~ [[:space:]](npm|pnpm|yarn)[[:space:]]+(ci|install|i)([[:space:]]|$) ]] || return 1
  [[ $c =~ --omit[=[:space:]]dev|--production|--only[=[:space:]]prod|--prod([[:space:]]|$) ]]
}
prunes_dev() {
  [[ " $1 " =~ [[:space:]](npm[[:space:]]+prune|pnpm[[:space:]]+prune)[[:space:]].*(--omit[=[:space:]]dev|--production|--prod) ]]
}

# ---- walk the instructions
stage=-1

for i in "${!instr_text[@]}"; do
  text=${instr_text[$i]}
  line=${instr_line[$i]}
  keyword=${text%%[[:space:]]*}
  keyword=${keyword^^}
  args=''
  [[ $text == *[[:space:]]* ]] && args="${text#*[[:space:]]}"
  args="${args#"${args%%[![:space:]]*}"}"

  case $keyword in
    ARG)
      if ((stage < 0)) && [[ $args =~ ^([A-Za-z_][A-Za-z0-9_]*)=(.*)$ ]]; then
        v=${BASH_REMATCH[2]}
        v=${v#\"}
        v=${v%\"}
        arg_default[${BASH_REMATCH[1]}]=$v
      fi
      ;;
    FROM)
      stage=$((stage + 1))
      stage_dev[$stage]=0
      stage_prod[$stage]=0
      stage_workdir[$stage]='/'
      stage_user[$stage]=''
      stage_user_line[$stage]=0
      stage_health[$stage]=''
      stage_expose[$stage]=0
      stage_start[$stage]=$line
      read -r -a toks <<<"$args"
      j=0
      while [[ ${toks[$j]:-} == --* ]]; do j=$((j + 1)); done
      image=${toks[$j]:-}
      if [[ $(lower "${toks[$((j + 1))]:-}") == as && -n ${toks[$((j + 2))]:-} ]]; then
        stage_index[$(lower "${toks[$((j + 2))]}")]=$stage
      fi
      ref=$(expand "$image")
      parent=${stage_index[$(lower "$ref")]:-}
      stage_index[$stage]=$stage
      if [[ -n $parent ]]; then
        stage_dev[$stage]=${stage_dev[$parent]}
        stage_prod[$stage]=${stage_prod[$parent]}
        stage_workdir[$stage]=${stage_workdir[$parent]}
        stage_user[$stage]=${stage_user[$parent]}
        stage_user_line[$stage]=${stage_user_line[$parent]}
        stage_health[$stage]=${stage_health[$parent]}
        stage_expose[$stage]=${stage_expose[$parent]}
      elif [[ $(lower "$ref") == scratch ]]; then
        :
      elif [[ -z $ref ]]; then
        fail "$line" "FROM without an image"
      elif [[ $ref == *\$* ]]; then
        fail "$line" "base image '$image' uses a variable without a default; pin it to an exact version"
      elif [[ $ref =~ @sha256:[0-9a-f]{64}$ ]]; then
        :
      else
        name_part=${ref##*/}
        if [[ $name_part != *:* ]]; then
          fail "$line" "base image '$ref' has no tag (that means latest); pin an exact version such as node:20.20.2-bookworm-slim"
        else
          tag=${name_part##*:}
          if [[ $(lower "$tag") == latest ]]; then
            fail "$line" "base image '$ref' uses 'latest'; pin an exact version"
          elif [[ ! $tag =~ ^v?[0-9]+\.[0-9]+\.[0-9]+([^0-9.]|$) ]]; then
            fail "$line" "base image '$ref' is not pinned to an exact version (tag '$tag' is a moving major/minor or a name); use major.minor.patch or a digest"
          fi
        fi
      fi
      ;;
    WORKDIR)
      w=$(expand "$args")
      if [[ $w == /* ]]; then stage_workdir[$stage]=$w; else stage_workdir[$stage]="${stage_workdir[$stage]%/}/$w"; fi
      ;;
    RUN)
      if installs_dev "$args"; then stage_dev[$stage]=1; fi
      if prunes_dev "$args"; then stage_dev[$stage]=0; stage_prod[$stage]=1; fi
      if installs_prod "$args"; then stage_prod[$stage]=1; fi
      ;;
    COPY | ADD)
      from=''
      srcs=()
      mapfile -t toks < <(words "$args")
      for t in "${toks[@]}"; do
        [[ -z $t ]] && continue
        if [[ $t == --from=* ]]; then from=$(lower "${t#--from=}"); continue; fi
        [[ $t == --* ]] && continue
        srcs+=("$t")
      done
      # The last word is the destination.
      ((${#srcs[@]} > 0)) && unset "srcs[$((${#srcs[@]} - 1))]"
      for src in "${srcs[@]}"; do
        if [[ -n $from ]]; then
          k=${stage_index[$from]:-}
          [[ -z $k ]] && continue
          wd=${stage_workdir[$k]%/}
          s=${src%/}
          whole=0
          [[ $s == "$wd" || $s == '' || $s == '.' || $s == '/' ]] && whole=1
          if [[ $src == *node_modules* || $whole == 1 ]]; then
            if [[ ${stage_dev[$k]} == 1 ]]; then
              fail "$line" "copies '$src' from stage '$from', which installed dev dependencies and never pruned them"
            elif [[ ${stage_prod[$k]} == 1 ]]; then
              stage_prod[$stage]=1
            fi
          fi
        else
          if [[ $src == *node_modules* ]]; then
            fail "$line" "copies node_modules from the build context; install production dependencies in the image instead"
          elif [[ ${src%/} == '.' || ${src%/} == '' ]] && ! grep -Eq '^/?node_modules/?$' "$ignore_file" 2>/dev/null; then
            fail "$line" "copies the whole build context but .dockerignore does not exclude node_modules"
          fi
        fi
      done
      ;;
    USER)
      stage_user[$stage]=$(expand "$args")
      stage_user_line[$stage]=$line
      ;;
    HEALTHCHECK)
      stage_health[$stage]=$args
      ;;
    EXPOSE)
      stage_expose[$stage]=1
      ;;
  esac
done

if ((stage < 0)); then
  fail 1 "no FROM instruction"
else
  start=${stage_start[$stage]}
  final_user=${stage_user[$stage]}
  user=${final_user%%:*}
  if [[ -z $final_user ]]; then
    fail "$start" "the final stage has no USER; run as a non-root user (e.g. USER node)"
  elif [[ $user == root || $user == 0 ]]; then
    fail "${stage_user_line[$stage]}" "the final stage runs as root (USER $final_user)"
  fi
  health=${stage_health[$stage]}
  if [[ -z $health ]]; then
    fail "$start" "the final stage has no HEALTHCHECK"
  elif [[ $(lower "${health%%[[:space:]]*}") == none ]]; then
    fail "$start" "the final stage disables the HEALTHCHECK (HEALTHCHECK NONE)"
  fi
  [[ ${stage_expose[$stage]} == 1 ]] || fail "$start" "the final stage has no EXPOSE"
  if [[ ${stage_dev[$stage]} == 1 ]]; then
    fail "$start" "the final stage installs dev dependencies; use npm ci --omit=dev (or npm prune --omit=dev)"
  elif [[ ${stage_prod[$stage]} == 0 ]]; then
    fail "$start" "the final stage installs no production dependencies (npm ci --omit=dev)"
  fi
fi

if ((${#problems[@]} > 0)); then
  printf 'lint-dockerfile: %s\n' "${problems[@]}" >&2
  exit 1
fi
echo "lint-dockerfile: $file ok"
