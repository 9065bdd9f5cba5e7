// Package remote is the remote tier of a checkpoint file: it copies saved versions, in
// the background, to a store every node can reach (package store: an S3 bucket or a
// shared directory), so that a job restarts on other nodes, and it holds the rules by
// which the ranks of a job agree on the version they restart from.
//
// A File of package engine opens its tier with Open when engine.Options.Remote is set;
// programs use the tier through the File (Save, Flush, JobVersion, RestoreJob) and
// never call this package directly, except the tools that read a store without a
// local file (InspectJob, StoreVersions, ReadStoreVersion, VerifyStore, Pull), which
// the engine re-exports.
//
// # The line between the engine and the tier
//
// The engine owns its data file and every slot in it; the tier owns the store. They
// meet at two small surfaces:
//
//   - Host, which the engine implements over its File: the kept versions, pins (the
//     engine pins a version's slot, and the slots of the versions a delta reads, when
//     it hands the version to the tier; the tier gives each pin back once, with
//     Unpin), reading the bytes and block hashes of a pinned version, importing
//     versions fetched from the store as one transaction, whether a large save wants
//     the cores, and the writer's session id.
//   - Tier, which the engine calls: Admit (back-pressure before a save), Published
//     (the versions of a save, pinned; called under the File's lock, so it never calls
//     back), Rewound, Restorable and NewestOf (a restore that falls back to the
//     store, relative versions on a new node), Join (RestoreJob), JobVersion, Flush
//     and Close.
//
// The tier never allocates, frees or reuses a slot, and this package does not import
// package engine.
//
//	save ──► engine publishes, pins ──► Tier.Published ──► queue
//	                                                        │ workers (4)
//	          Host.Blocks, Host.ReadAt ◄────────────────────┤ data object: conditional create
//	          Host.Unpin ◄──────────────────────────────────┤ bytes sent
//	                                                        └ manifest: conditional create = commit
//
// # In the store
//
// A version's bytes go to a data object (d/<rank>/<life>/<version>-<hash>-<length>), then a
// manifest naming them (m/<rank>/<life>/<checkpoint>/<version>) is created with a
// conditional create: the version is committed when its manifest exists. Retention
// deletes a version manifest first, then the data objects nothing names any more.
//
// # The job protocol
//
// The ranks of a job never talk to each other and there is no coordinator: they agree
// through small records in the store (job/...), each created with a conditional
// create. A job's history is a chain of lives; each restart of a rank (RestoreJob)
// joins the current life, or seals it and begins the next at its restart point when
// the rank was already a member, so that nothing of an abandoned life ever counts
// again. A version counts for the job when every rank has committed every checkpoint
// it registered at that number in the life; ranks climb trees of markers (arity 8)
// so that whoever completes a version or a join learns it from a constant number of
// requests, whatever the number of ranks. Files: records.go (the records' bytes),
// restart.go (Join, JobVersion), job.go (lives, logs, trees, completion), retain.go
// (retention in the store), reconcile.go (what Open reads). docs/REMOTE.md describes
// every key and byte, the protocol and why it is safe, and what each failure leaves
// behind.
//
// # Errors
//
// Every error wraps one of the sentinel errors the engine exports (internal/base):
// ErrRemote for the store's failures (wrapping the store's own error too, so
// errors.Is(err, store.ErrDenied) tells the cause), ErrCorrupt for damage, ErrVersion
// and ErrNotFound for what a store does not hold, ErrInvalid for bad settings.
package remote
