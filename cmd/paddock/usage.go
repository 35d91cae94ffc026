package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"
)

// enforceUsage makes every mistake in a command line exit with status 2
// (codeUsage), the rule docs/cli.md gives for all commands: an unknown
// command or subcommand, an unknown flag or a bad flag value, a missing
// required flag, wrong arguments, an unknown help topic. Cobra reports
// these as plain errors, and for a command that only groups subcommands
// (paddock image) it prints help and succeeds; enforceUsage rewires the
// tree under root once every command is added.
func enforceUsage(root *cobra.Command) {
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageError("%w (see %s --help)", err, c.CommandPath())
	})
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		c.SuggestionsMinimumDistance = 2
		checkFlagsFirst(c)
		switch {
		case c.Name() == "help" && c.HasParent():
			c.RunE = helpAction(c.Run)
		case c.HasSubCommands() && c.Run == nil && c.RunE == nil:
			c.Args = cobra.ArbitraryArgs
			c.RunE = groupAction
		}
		if args := c.Args; args != nil {
			c.Args = func(c *cobra.Command, a []string) error {
				if err := args(c, a); err != nil {
					return asUsage(c, err)
				}
				return nil
			}
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

// checkFlagsFirst makes c check its required flags and flag groups
// (flags that exclude each other) in its pre-run hook, as usage errors:
// cobra checks them after the hooks, as plain errors.
func checkFlagsFirst(c *cobra.Command) {
	preE, pre := c.PreRunE, c.PreRun
	c.PreRunE = func(c *cobra.Command, args []string) error {
		if err := errors.Join(c.ValidateRequiredFlags(), c.ValidateFlagGroups()); err != nil {
			return usageError("%w (see %s --help)", err, c.CommandPath())
		}
		switch {
		case preE != nil:
			return preE(c, args)
		case pre != nil:
			pre(c, args)
		}
		return nil
	}
}

// asUsage makes err a usage error, unless it already has a status.
func asUsage(c *cobra.Command, err error) error {
	var ee *exitError
	if errors.As(err, &ee) {
		return err
	}
	return usageError("%w (usage: %s)", err, c.UseLine())
}

// groupAction runs a command that only groups subcommands: alone it
// prints its help; with an argument, that is not one of its subcommands.
func groupAction(c *cobra.Command, args []string) error {
	if len(args) == 0 {
		return c.Help()
	}
	return unknownCommand(c, args[0])
}

// unknownCommand is the usage error for a name that is not a subcommand
// of c, with the closest ones.
func unknownCommand(c *cobra.Command, name string) error {
	hint := ""
	if s := c.SuggestionsFor(name); len(s) > 0 {
		hint = fmt.Sprintf(" (did you mean %q?)", s[0])
	}
	return usageError("unknown command %q for %q%s; see %s --help", name, c.CommandPath(), hint, c.CommandPath())
}

// helpAction wraps cobra's help command: a topic that is not a command is
// a usage error instead of a root help page.
func helpAction(help func(*cobra.Command, []string)) func(*cobra.Command, []string) error {
	return func(c *cobra.Command, args []string) error {
		target, rest, err := c.Root().Find(args)
		if err != nil {
			return usageError("%w", err)
		}
		if len(rest) > 0 {
			return unknownCommand(target, rest[0])
		}
		help(c, args)
		return nil
	}
}
