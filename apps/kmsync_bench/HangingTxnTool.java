// What a partition's open transaction is, and ending it, through Kafka's Java Admin API (KIP-664:
// describeProducers, listTransactions, describeTransactions, abortTransaction); neither confluent-kafka nor
// aiokafka offers these (docs/reference/streaming.md §3.1). Used by apps/kmsync_bench/hanging_txn.py.
//
//   java -cp '.cache/kafka/4.4.0/libs/*' apps/kmsync_bench/HangingTxnTool.java inspect <bootstrap> [--min-age-ms=N] <topic>:<partition>...
//   java -cp '.cache/kafka/4.4.0/libs/*' apps/kmsync_bench/HangingTxnTool.java abort <bootstrap> [--min-age-ms=N] [--start-offset=O] <topic>:<partition>...
//
// Only producers whose last record on the partition is at least N ms old count (default 120000: the sink's and
// transform's hanging threshold, KMSYNC_*_HANGING_AFTER_SECONDS; a live producer writes at every checkpoint, so its
// transaction on the same partition is left alone). With --start-offset=O, abort ends only the transaction that
// starts at offset O (the LSO of the "hanging transaction" log line), as kafka-transactions.sh abort --start-offset.
// --min-age-ms=0 counts every open transaction, live ones included: aborting those drops a live writer's records
// (a transform checkpoint's operations, whose input offsets still commit). inspect prints one JSON line per producer with an open transaction on a named partition: the producer id and
// epoch, the transaction's first offset, and what the coordinator says of the transactional id holding that
// producer id (listTransactions + describeTransactions; "transactionalId": null when no coordinator knows it).
// abort ends every such transaction with an abort marker of its producer id (kafka-transactions.sh abort) and
// prints one JSON line per abort. JDK 11+ runs this single source file directly.

import java.util.*;
import java.util.stream.*;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.admin.DescribeProducersResult.PartitionProducerState;
import org.apache.kafka.common.TopicPartition;

public class HangingTxnTool {
    // Only transactions whose producer last wrote to the partition this long ago (live ones write every commit).
    static long minAgeMs = 120_000;
    // abort only: only the transaction that starts at this offset (-1: any old enough).
    static long startOffset = -1;

    static boolean open(ProducerState p) {
        return p.currentTransactionStartOffset().isPresent() && System.currentTimeMillis() - p.lastTimestamp() >= minAgeMs
                && (startOffset < 0 || p.currentTransactionStartOffset().getAsLong() == startOffset);
    }

    public static void main(String[] args) throws Exception {
        Properties props = new Properties();
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, args[1]);
        props.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "30000");
        props.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "15000");
        List<TopicPartition> tps = new ArrayList<>();
        int first = 2;
        for (; first < args.length && args[first].startsWith("--"); first++) {
            if (args[first].startsWith("--min-age-ms=")) {
                minAgeMs = Long.parseLong(args[first].substring("--min-age-ms=".length()));
            } else if (args[first].startsWith("--start-offset=")) {
                startOffset = Long.parseLong(args[first].substring("--start-offset=".length()));
            } else {
                throw new IllegalArgumentException("unknown option " + args[first]);
            }
        }
        for (int i = first; i < args.length; i++) {
            int colon = args[i].lastIndexOf(':');
            tps.add(new TopicPartition(args[i].substring(0, colon), Integer.parseInt(args[i].substring(colon + 1))));
        }
        try (Admin admin = Admin.create(props)) {
            Map<TopicPartition, PartitionProducerState> producers = admin.describeProducers(tps).all().get();
            if (args[0].equals("inspect")) {
                inspect(admin, producers);
            } else if (args[0].equals("abort")) {
                abort(admin, producers);
            } else {
                throw new IllegalArgumentException("inspect or abort, not " + args[0]);
            }
        }
    }

    static void inspect(Admin admin, Map<TopicPartition, PartitionProducerState> producers) throws Exception {
        Map<Long, TransactionListing> byProducer = new HashMap<>();
        for (TransactionListing listing : admin.listTransactions().all().get()) {
            byProducer.put(listing.producerId(), listing);
        }
        for (Map.Entry<TopicPartition, PartitionProducerState> entry : producers.entrySet()) {
            for (ProducerState p : entry.getValue().activeProducers()) {
                if (!open(p)) {
                    continue;
                }
                TransactionListing listing = byProducer.get(p.producerId());
                StringBuilder line = new StringBuilder("{");
                field(line, "topic", entry.getKey().topic()).append(',');
                line.append("\"partition\":").append(entry.getKey().partition()).append(',');
                line.append("\"producerId\":").append(p.producerId()).append(',');
                line.append("\"producerEpoch\":").append(p.producerEpoch()).append(',');
                line.append("\"coordinatorEpoch\":").append(p.coordinatorEpoch().orElse(-1)).append(',');
                line.append("\"txnStartOffset\":").append(p.currentTransactionStartOffset().getAsLong()).append(',');
                line.append("\"lastTimestamp\":").append(p.lastTimestamp()).append(',');
                describe(admin, listing, line);
                System.out.println(line.append('}'));
            }
        }
    }

    static void describe(Admin admin, TransactionListing listing, StringBuilder line) throws Exception {
        if (listing == null) {
            line.append("\"transactionalId\":null");
            return;
        }
        String id = listing.transactionalId();
        TransactionDescription d = admin.describeTransactions(List.of(id)).all().get().get(id);
        field(line, "transactionalId", id).append(',');
        field(line, "coordinatorState", d.state().toString()).append(',');
        line.append("\"coordinatorProducerEpoch\":").append(d.producerEpoch()).append(',');
        line.append("\"transactionTimeoutMs\":").append(d.transactionTimeoutMs()).append(',');
        field(line, "coordinatorPartitions",
              d.topicPartitions().stream().map(TopicPartition::toString).sorted().collect(Collectors.joining(" ")));
    }

    static void abort(Admin admin, Map<TopicPartition, PartitionProducerState> producers) throws Exception {
        for (Map.Entry<TopicPartition, PartitionProducerState> entry : producers.entrySet()) {
            for (ProducerState p : entry.getValue().activeProducers()) {
                if (!open(p)) {
                    continue;
                }
                AbortTransactionSpec spec = new AbortTransactionSpec(entry.getKey(), p.producerId(),
                        (short) p.producerEpoch(), p.coordinatorEpoch().orElse(-1));
                admin.abortTransaction(spec).all().get();
                StringBuilder line = new StringBuilder("{");
                field(line, "aborted", entry.getKey().toString()).append(',');
                line.append("\"producerId\":").append(p.producerId()).append('}');
                System.out.println(line);
            }
        }
    }

    static StringBuilder field(StringBuilder line, String name, String value) {
        return line.append('"').append(name).append("\":\"").append(value.replace("\"", "'")).append('"');
    }
}
