# bash completion for kalua. Installed as share/bash-completion/completions/kalua,
# or: source completions/kalua.bash
#
# Everything comes from kalua itself when you press TAB, so it cannot go
# stale: the commands from kalua.host.commands(), a command's --flags and
# subcommands from `kalua help <command>`, a flag's values from its
# "A | B | C" description there. A flag that names a file completes paths.

# The kalua being completed: the one typed (./build/kalua), else the one on PATH.
_kalua_bin() {
  local bin=${COMP_WORDS[0]}
  bin=${bin/#\~/$HOME}
  if [[ $bin == */* && -x $bin ]] || command -v "$bin" >/dev/null 2>&1; then
    printf '%s' "$bin"
  else
    printf kalua
  fi
}

_kalua_commands() { # kalua
  "$1" -e 'for _, c in ipairs(require("kalua.host").commands()) do print(c) end' 2>/dev/null
}

# --flags named anywhere in the command's help.
_kalua_flags() { # kalua command
  "$1" help "$2" 2>/dev/null | grep -oE -- '--[a-z][a-z0-9-]+' | sort -u
}

# Subcommands: the lower-case word after `kalua <command>` in usage lines.
_kalua_subcommands() { # kalua command
  "$1" help "$2" 2>/dev/null |
    grep -oE -- "kalua $2 \[?[a-z][a-z-]*" | sed -e "s/^kalua $2 //" -e 's/^\[//' | sort -u
}

# A flag's values when its help line describes it as "A | B | C".
_kalua_flag_values() { # kalua command flag
  "$1" help "$2" 2>/dev/null |
    sed -nE "s/^.*$3 VALUE +([A-Za-z0-9_.-]+( \| [A-Za-z0-9_.-]+)+)\$/\1/p" | head -1 | sed 's/ | /\n/g'
}

_kalua() {
  local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD - 1]} kalua cmd values
  COMPREPLY=()
  kalua=$(_kalua_bin)
  if [[ $COMP_CWORD -eq 1 ]]; then
    [[ $cur == -* ]] && return 0 # lua5.4's own options
    mapfile -t COMPREPLY < <(compgen -W "$(_kalua_commands "$kalua")" -- "$cur")
    return 0
  fi
  cmd=${COMP_WORDS[1]}
  [[ $cmd == -* || $cmd == *.lua || $cmd == */* ]] && return 0 # a script: files
  if [[ $cmd == help && $COMP_CWORD -eq 2 ]]; then
    mapfile -t COMPREPLY < <(compgen -W "$(_kalua_commands "$kalua")" -- "$cur")
    return 0
  fi
  case $prev in
    --config | --jobs | --path | --state-dir | --metrics-textfile | --sasl-lua-mechanism | --auth-script | \
      --tls-cert | --tls-key | --tls-client-ca | \
      *-file | *-keytab | *-location | *-krb5-config | *-jaas-config)
      mapfile -t COMPREPLY < <(compgen -f -- "$cur")
      return 0
      ;;
    --*)
      values=$(_kalua_flag_values "$kalua" "$cmd" "$prev")
      if [[ -n $values ]]; then
        mapfile -t COMPREPLY < <(compgen -W "$values" -- "$cur")
        return 0
      fi
      ;;
  esac
  if [[ $cur == -* ]]; then
    mapfile -t COMPREPLY < <(compgen -W "$(_kalua_flags "$kalua" "$cmd")" -- "$cur")
  elif [[ $COMP_CWORD -eq 2 ]]; then
    mapfile -t COMPREPLY < <(compgen -W "$(_kalua_subcommands "$kalua" "$cmd")" -- "$cur")
  fi
  return 0
}

complete -o bashdefault -o default -F _kalua kalua
