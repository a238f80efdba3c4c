/* Fault injection for tests that must kill the host at one exact point, which a signal sent from
 * outside cannot hit reliably. Inert unless its environment variable is set:
 *   OF_FAULT_KILL_AFTER_COMMIT=N  the host kills itself with SIGKILL right after the Nth
 *                                 database commit of a stage's event, before the events it
 *                                 emitted are published and before its offset is committed. */
#ifndef OF_FAULT_H
#define OF_FAULT_H

void of_fault_after_commit(void);

#endif
