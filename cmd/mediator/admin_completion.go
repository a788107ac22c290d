package main

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"
)

// The scripts call the binary with urfave/cli's --generate-bash-completion
// (EnableBashCompletion is on), which lists the commands, subcommands and
// flags that fit the words typed so far. The bash one is urfave/cli's
// autocomplete/bash_autocomplete without its dependence on the
// bash-completion package and without eval; the zsh one is its
// zsh_autocomplete. PROG is replaced by the program name.
const bashCompletion = `# bash completion for PROG; load with: source <(PROG completion bash)
_PROG_bash_autocomplete() {
  local cur words cword opts
  if declare -F _get_comp_words_by_ref >/dev/null 2>&1; then
    _get_comp_words_by_ref -n "=:" cur words cword
  else
    cur="${COMP_WORDS[COMP_CWORD]}"
    words=("${COMP_WORDS[@]}")
    cword=$COMP_CWORD
  fi
  words=("${words[@]:0:$cword}")
  if [[ "$cur" == "-"* ]]; then
    opts=$("${words[@]}" "$cur" --generate-bash-completion 2>/dev/null)
  else
    opts=$("${words[@]}" --generate-bash-completion 2>/dev/null)
  fi
  COMPREPLY=($(compgen -W "${opts}" -- "${cur}"))
  return 0
}
complete -o bashdefault -o default -F _PROG_bash_autocomplete PROG
`

const zshCompletion = `#compdef PROG
# zsh completion for PROG; load with (after compinit): source <(PROG completion zsh)

_PROG_zsh_autocomplete() {
  local -a opts
  local cur
  cur=${words[-1]}
  if [[ "$cur" == "-"* ]]; then
    opts=("${(@f)$(${words[@]:0:#words[@]-1} ${cur} --generate-bash-completion)}")
  else
    opts=("${(@f)$(${words[@]:0:#words[@]-1} --generate-bash-completion)}")
  fi

  if [[ "${opts[1]}" != "" ]]; then
    _describe 'values' opts
  else
    _files
  fi
}

compdef _PROG_zsh_autocomplete PROG
`

func completionCommand() *cli.Command {
	return &cli.Command{
		Name:      "completion",
		Usage:     "print a shell completion script for bash or zsh",
		ArgsUsage: "bash|zsh",
		Description: `The script asks the mediator binary itself what fits (its hidden
--generate-bash-completion flag), so it follows new commands and flags.

Example:
   source <(mediator completion bash)            # in ~/.bashrc
   mediator completion bash > /etc/bash_completion.d/mediator
   source <(mediator completion zsh)             # in ~/.zshrc, after compinit`,
		Action: func(c *cli.Context) error {
			shell, err := oneArg(c, "SHELL")
			if err != nil {
				return err
			}
			var script string
			switch shell {
			case "bash":
				script = bashCompletion
			case "zsh":
				script = zshCompletion
			default:
				return fmt.Errorf("completion %q: give bash or zsh", shell)
			}
			_, err = fmt.Fprint(c.App.Writer, strings.ReplaceAll(script, "PROG", c.App.Name))
			return err
		},
		BashComplete: func(c *cli.Context) {
			if c.NArg() == 0 {
				fmt.Fprintln(c.App.Writer, "bash")
				fmt.Fprintln(c.App.Writer, "zsh")
			}
		},
	}
}
